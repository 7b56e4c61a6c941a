//! The three layers of a gateway (router, pipe, backend): what each records. Span names, attribute keys,
//! measures and views are named here and only here.
