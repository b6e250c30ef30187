"""Table storage for every store: primitives and logic (`backend`), key policy (`keys`), large values and limits
(`codec`), the Table Storage backend (`tables`) and the in-memory one (`memory`)."""
