-- Argo CD health of a RuntimePosture, from the conditions the operator folds from the node
-- observers' reports (operator/src/posture.rs): Ready, Drifted and Compliant.
--   Degraded     Drifted=True (what runs differs from the baseline: a program outside the entry
--                trace, a library the SBOM does not list, an executable written after the image,
--                an undeclared listening port), or Compliant=False (an image failing policy).
--   Healthy      Ready=True (observed), no drift, compliant.
--   Progressing  no status yet, a status of an older generation, or Ready=False
--                (AwaitingObservation: no observer has reported the workload yet).
local hs = {}

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
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the node observers and the operator"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to fold generation " .. tostring(generation)
  return hs
end

local drifted = condition(status, "Drifted")
if drifted ~= nil and drifted.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(drifted)
  return hs
end
local compliant = condition(status, "Compliant")
if compliant ~= nil and compliant.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(compliant)
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
else
  hs.status = "Progressing"
  hs.message = ready and describe(ready) or "Waiting for the Ready condition"
end
return hs
