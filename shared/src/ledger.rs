//! Ledger: durable, append-only deletion journal (being written).
