"""Everything that keeps state in Redis: one module per store, its Lua in ``.lua`` files beside it
(loaded by name through ``scripts.load_script``)."""
