"""``plantstage serve``: a read-only web app over the run folders (runs, trends, comparisons,
pending signoffs); signing off only behind an authenticating proxy (docs/serve.md)."""
