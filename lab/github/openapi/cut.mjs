// cut.mjs cuts, from GitHub's published OpenAPI description (npm
// @octokit/openapi, generated/api.github.com.json), the subset the lab's
// GitHub serves: only the operations nestbot calls, plus every component
// they reference, directly or through other components. The result,
// api.github.com.subset.json beside this script, is committed and embedded
// by lab/github; a Go test re-runs this script and fails when the
// committed subset no longer matches the installed package.
//
// Usage (from the repository root, after `bash .ci/fixtures`):
//
//	node lab/github/openapi/cut.mjs                 # rewrite the subset
//	node lab/github/openapi/cut.mjs --stdout        # print it instead
//	node lab/github/openapi/cut.mjs --package DIR   # read another install of @octokit/openapi
//
// To add an operation, add it to OPERATIONS, run the script, and give the
// lab's server a handler for it.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

// OPERATIONS are "METHOD path" exactly as the description spells the path.
export const OPERATIONS = [
  "GET /rate_limit",
  "GET /app",
  "GET /user",
  "POST /app/installations/{installation_id}/access_tokens",
  "GET /repos/{owner}/{repo}",
  "GET /repos/{owner}/{repo}/installation",
  "GET /repos/{owner}/{repo}/collaborators/{username}/permission",
  "GET /repos/{owner}/{repo}/contents/{path}",
  "GET /repos/{owner}/{repo}/pulls/{pull_number}",
  "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews",
  "GET /repos/{owner}/{repo}/pulls/{pull_number}/files",
  "GET /repos/{owner}/{repo}/commits/{commit_sha}/pulls",
  "GET /repos/{owner}/{repo}/issues",
  "POST /repos/{owner}/{repo}/issues",
  "GET /repos/{owner}/{repo}/issues/{issue_number}",
  "PATCH /repos/{owner}/{repo}/issues/{issue_number}",
  "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
  "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
  "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}",
  "DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}",
  "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
  "POST /repos/{owner}/{repo}/check-runs",
  "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}",
  "GET /repos/{owner}/{repo}/commits/{ref}/check-runs",
  "GET /repos/{owner}/{repo}/deployments",
  "POST /repos/{owner}/{repo}/deployments",
  "GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
  "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
];

function parseArgs(argv) {
  const args = { stdout: false, pkg: join(here, "..", "..", "..", ".ci", "npm", "node_modules", "@octokit", "openapi") };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--stdout") args.stdout = true;
    else if (argv[i] === "--package" && i + 1 < argv.length) args.pkg = argv[++i];
    else {
      process.stderr.write(`cut.mjs: unknown argument ${JSON.stringify(argv[i])}; use --stdout or --package DIR\n`);
      process.exit(2);
    }
  }
  return args;
}

// refsIn collects every "$ref" string anywhere inside v.
function refsIn(v, out) {
  if (Array.isArray(v)) {
    for (const x of v) refsIn(x, out);
  } else if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      if (k === "$ref" && typeof x === "string") out.push(x);
      else refsIn(x, out);
    }
  }
  return out;
}

function cut(spec, version) {
  const paths = {};
  for (const op of OPERATIONS) {
    const [method, path] = op.split(" ");
    const item = spec.paths[path];
    const operation = item && item[method.toLowerCase()];
    if (!operation) throw new Error(`cut.mjs: ${op} is not in the description; check its spelling against generated/api.github.com.json`);
    paths[path] ??= {};
    paths[path][method.toLowerCase()] = operation;
    if (item.parameters) paths[path].parameters = item.parameters;
  }

  // Follow references transitively from the kept operations.
  const components = {};
  const seen = new Set();
  const queue = refsIn(paths, []);
  while (queue.length > 0) {
    const ref = queue.shift();
    if (seen.has(ref)) continue;
    seen.add(ref);
    const m = /^#\/components\/([^/]+)\/([^/]+)$/.exec(ref);
    if (!m) throw new Error(`cut.mjs: unsupported reference ${ref}`);
    const [, kind, name] = m;
    const target = spec.components[kind]?.[name];
    if (target === undefined) throw new Error(`cut.mjs: dangling reference ${ref}`);
    (components[kind] ??= {})[name] = target;
    refsIn(target, queue);
  }
  // Keep the package's own key order within each kind, so the output is
  // stable whatever order the references were found in.
  const sortedComponents = {};
  for (const kind of Object.keys(spec.components)) {
    if (!components[kind]) continue;
    sortedComponents[kind] = {};
    for (const name of Object.keys(spec.components[kind])) {
      if (name in components[kind]) sortedComponents[kind][name] = components[kind][name];
    }
  }
  const sortedPaths = {};
  for (const p of Object.keys(spec.paths)) if (paths[p]) sortedPaths[p] = paths[p];

  return {
    openapi: spec.openapi,
    info: {
      ...spec.info,
      "x-nestbot-subset": {
        package: "@octokit/openapi",
        version,
        source: "generated/api.github.com.json",
        script: "lab/github/openapi/cut.mjs",
        operations: OPERATIONS.length,
      },
    },
    servers: spec.servers,
    paths: sortedPaths,
    components: sortedComponents,
  };
}

const args = parseArgs(process.argv.slice(2));
const pkg = JSON.parse(readFileSync(join(args.pkg, "package.json"), "utf8"));
const spec = JSON.parse(readFileSync(join(args.pkg, "generated", "api.github.com.json"), "utf8"));
const out = JSON.stringify(cut(spec, pkg.version), null, 1) + "\n";
if (args.stdout) process.stdout.write(out);
else writeFileSync(join(here, "api.github.com.subset.json"), out);
