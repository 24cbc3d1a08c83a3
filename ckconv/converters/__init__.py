"""Name-mapping rules, presets and diff: pure functions TensorMap -> TensorMap.

Layout: ``loader`` reads rules files into the ``model`` (Rule, Stage, Rules; ``invert``
reverses renames, ``ops`` holds the tensor operations and ``tensors`` their lazy
wrappers); ``engine`` applies rules to a TensorMap; ``objectgraph`` names TF2 keys;
``catalog`` finds presets (``presets/*.toml``); ``diff`` compares checkpoints;
``cli_support`` is the command-line side. The public entry point is :mod:`ckconv.rules`.
"""
