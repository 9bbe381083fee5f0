// Validates custom resources with the validators the @kubernetes-models npm packages
// generate from the operators' CRDs. Argument: a JSON object mapping each apiVersion to the
// package module that holds its kinds (e.g. {"keda.sh/v1alpha1": "@kubernetes-models/keda/
// keda.sh/v1alpha1"}). Reads a JSON array of objects on stdin; writes a JSON array with,
// for each object in the same order, the problems found ("<path>: <what>"), empty when
// valid.
const modules = JSON.parse(process.argv[2]);
const groups = {};
for (const [apiVersion, specifier] of Object.entries(modules)) {
  groups[apiVersion] = await import(specifier);
}

function describe(error) {
  const path = error.instancePath || "/";
  const params = error.params || {};
  if (error.keyword === "required") return `${path}: required property ${params.missingProperty} is missing`;
  if (error.keyword === "enum") return `${path}: must be one of ${JSON.stringify(params.allowedValues)}`;
  if (error.keyword === "type") return `${path}: must be of type ${params.type}`;
  if (error.keyword === "pattern") return `${path}: must match ${params.pattern}`;
  if (error.keyword === "additionalProperties") return `${path}: unknown property ${params.additionalProperty}`;
  if (error.message) return `${path}: ${error.message}`;
  return `${path}: fails ${error.keyword} ${JSON.stringify(params)}`;
}

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const known = Object.keys(groups).join(" or ");
const results = JSON.parse(input).map((body) => {
  const group = groups[body.apiVersion];
  if (group === undefined) return [`/apiVersion: ${body.apiVersion} is not ${known}`];
  const model = group[body.kind];
  if (typeof model !== "function") return [`/kind: ${body.kind} is not a ${body.apiVersion} kind`];
  try {
    new model(body).validate();
    return [];
  } catch (err) {
    if (Array.isArray(err.errors)) return err.errors.map(describe);
    return [String(err && err.message ? err.message : err)];
  }
});
process.stdout.write(JSON.stringify(results));
