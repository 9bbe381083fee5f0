// Validates monitoring.coreos.com objects with the validators that the npm package
// @kubernetes-models/prometheus-operator generates from the prometheus-operator CRDs.
// Reads a JSON array of objects on stdin; writes a JSON array with, for each object in
// the same order, the list of problems found ("<path>: <what>"), empty when valid.
import * as v1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

function describe(error) {
  const path = error.instancePath || "/";
  const params = error.params || {};
  if (error.keyword === "required") return `${path}: required property ${params.missingProperty} is missing`;
  if (error.keyword === "enum") return `${path}: must be one of ${JSON.stringify(params.allowedValues)}`;
  if (error.keyword === "type") return `${path}: must be of type ${params.type}`;
  if (error.keyword === "pattern") return `${path}: must match ${params.pattern}`;
  if (error.message) return `${path}: ${error.message}`;
  return `${path}: fails ${error.keyword} ${JSON.stringify(params)}`;
}

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((body) => {
  const model = v1[body.kind];
  if (typeof model !== "function") return [`/kind: ${body.kind} is not a monitoring.coreos.com/v1 kind`];
  try {
    new model(body).validate();
    return [];
  } catch (err) {
    if (Array.isArray(err.errors)) return err.errors.map(describe);
    return [String(err && err.message ? err.message : err)];
  }
});
process.stdout.write(JSON.stringify(results));
