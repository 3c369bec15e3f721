"""Reports for people: text (drlab demo), self-contained HTML, topology drawings,
the diagnosis page."""
