//! `faces`: Siamese nets, DeepFace heads, FaceNet triplets (not built yet: see issues 4 and 5).
