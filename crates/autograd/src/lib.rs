//! `autograd`: reverse-mode differentiation over `tensor` ops (not built yet: see issue 3).
