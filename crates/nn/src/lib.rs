//! `nn`: layers, losses, optimizers and checkpoints (not built yet: see issue 3).
