//! `style`: Gatys neural style transfer (not built yet: see issue 6).
