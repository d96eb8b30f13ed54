-- Argo CD health of a ZastavaPolicy, from the kstatus-style conditions the operator writes
-- (operator/src/status.rs): Accepted and Ready always, Stalled only while the policy is
-- unusable.
--   Healthy      Ready=True (reason Accepted): the policy is in force.
--   Degraded     Stalled=True, or Ready=False with one of the operator's rejection reasons
--                (a key that does not parse, a pattern that does not compile, a missing Secret):
--                nothing changes until the policy or its Secret is fixed.
--   Progressing  no status yet, or the status is of an older generation than the spec.
local hs = {}
local rejections = {
  InvalidKey = true, SecretNotFound = true, SecretKeyNotFound = true, InvalidPattern = true,
  InvalidRegistry = true, InvalidSelector = true, InvalidSpec = true,
}

local function condition(status, type)
  if status.conditions == nil then return nil end
  for _, c in ipairs(status.conditions) do
    if c.type == type then return c end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then return c.reason .. ": " .. c.message end
  return c.reason or ""
end

local generation = obj.metadata and obj.metadata.generation
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to assess the policy"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to assess generation " .. tostring(generation)
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
elseif ready.status == "False" and rejections[ready.reason] then
  hs.status = "Degraded"
  hs.message = describe(ready)
else
  hs.status = "Progressing"
  hs.message = describe(ready)
end
return hs
