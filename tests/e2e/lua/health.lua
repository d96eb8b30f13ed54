-- Runs an Argo CD health check the way Argo CD does: the object in the global `obj`, the
-- script's returned table read for `status` and `message`.
--   lua5.4 health.lua SCRIPT < OBJECT
-- OBJECT is Lua source returning the object as a table (`return {...}`); prints
-- "STATUS<TAB>MESSAGE".
local script = assert(arg[1], "usage: health.lua SCRIPT < OBJECT")
local source = io.read("a")
local object = assert(load(source, "=object", "t", {}))
obj = object()
local check = assert(loadfile(script))
local hs = check()
assert(type(hs) == "table" and type(hs.status) == "string", "the script returned no status")
io.write(hs.status, "\t", hs.message or "", "\n")
