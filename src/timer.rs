//! The hashed timer wheel: periodic scrape ticks and deadlines.
