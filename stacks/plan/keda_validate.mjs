// Validates keda.sh objects with the validators that the npm package @kubernetes-models/keda
// generates from KEDA's CRDs. Reads a JSON array of objects on stdin; writes a JSON array
// with, for each object in the same order, the problems found ("<path>: <what>"), empty
// when valid.
import * as v1alpha1 from "@kubernetes-models/keda/keda.sh/v1alpha1";

function describe(error) {
  const path = error.instancePath || "/";
  const params = error.params || {};
  if (error.keyword === "required") return `${path}: required property ${params.missingProperty} is missing`;
  if (error.keyword === "enum") return `${path}: must be one of ${JSON.stringify(params.allowedValues)}`;
  if (error.keyword === "type") return `${path}: must be of type ${params.type}`;
  if (error.keyword === "additionalProperties") return `${path}: unknown property ${params.additionalProperty}`;
  if (error.message) return `${path}: ${error.message}`;
  return `${path}: fails ${error.keyword} ${JSON.stringify(params)}`;
}

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((body) => {
  if (body.apiVersion !== "keda.sh/v1alpha1") return [`/apiVersion: ${body.apiVersion} is not keda.sh/v1alpha1`];
  const model = v1alpha1[body.kind];
  if (typeof model !== "function") return [`/kind: ${body.kind} is not a keda.sh/v1alpha1 kind`];
  try {
    new model(body).validate();
    return [];
  } catch (err) {
    if (Array.isArray(err.errors)) return err.errors.map(describe);
    return [String(err && err.message ? err.message : err)];
  }
});
process.stdout.write(JSON.stringify(results));
