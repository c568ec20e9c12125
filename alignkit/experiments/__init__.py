"""Multi-run experiments built from the other stages (data → train → eval), e.g. the noise-robustness sweep."""
