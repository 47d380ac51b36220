//! Parser, snapshot (arena + family index), relabel + merge writer.
