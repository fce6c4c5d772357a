// ttrpc: see issue 7.
