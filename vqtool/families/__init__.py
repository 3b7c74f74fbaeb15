"""Model families, one folder each; `vqtool.registry` lists them. A family imports shared modules,
never another family (tests/test_structure.py checks it)."""
