// Refresh the vendored GraphiQL files from the pinned npm packages (`make graphiql`).
//
// Installs package.json + package-lock.json with `npm ci` in a temporary folder (no node_modules
// ever lands in the Python package), copies the browser builds next to this script, and writes
// LICENSES.txt: the licence of every installed package, since graphiql.min.js bundles its
// dependency tree. The copied files are committed, so neither CI nor `pip install` needs npm.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const FILES = [
  ["react/umd/react.production.min.js", "react.production.min.js"],
  ["react-dom/umd/react-dom.production.min.js", "react-dom.production.min.js"],
  ["graphiql/graphiql.min.js", "graphiql.min.js"],
  ["graphiql/graphiql.min.css", "graphiql.min.css"],
  ["graphql-ws/umd/graphql-ws.min.js", "graphql-ws.min.js"],
];
const LICENSE_NAMES = /^(licen[cs]e|copying|notice)(\.(md|txt|markdown))?$/i;

function packagesUnder(modules) {
  const found = [];
  for (const entry of readdirSync(modules, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith(".")) continue;
    const path = join(modules, entry.name);
    if (entry.name.startsWith("@")) {
      found.push(...packagesUnder(path));
      continue;
    }
    if (existsSync(join(path, "package.json"))) found.push(path);
    if (existsSync(join(path, "node_modules"))) found.push(...packagesUnder(join(path, "node_modules")));
  }
  return found;
}

function licenceSection(path) {
  const meta = JSON.parse(readFileSync(join(path, "package.json"), "utf8"));
  const licence = typeof meta.license === "string" ? meta.license : JSON.stringify(meta.license ?? "UNKNOWN");
  const texts = readdirSync(path)
    .filter((name) => LICENSE_NAMES.test(name))
    .sort()
    .map((name) => readFileSync(join(path, name), "utf8").trim());
  const body = texts.length ? texts.join("\n\n") : `(no licence file in the package; package.json says ${licence})`;
  return { key: `${meta.name}@${meta.version}`, text: `${meta.name}@${meta.version} — ${licence}\n\n${body}\n` };
}

const work = mkdtempSync(join(tmpdir(), "graphiql-vendor-"));
try {
  for (const name of ["package.json", "package-lock.json"]) copyFileSync(join(here, name), join(work, name));
  execFileSync("npm", ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--silent"], { cwd: work, stdio: "inherit" });
  const modules = join(work, "node_modules");
  for (const [from, to] of FILES) copyFileSync(join(modules, from), join(here, to));
  const sections = new Map();
  for (const path of packagesUnder(modules)) {
    const section = licenceSection(path);
    sections.set(section.key, section.text);
  }
  const keys = [...sections.keys()].sort();
  const header =
    "Licences of the npm packages vendored into handlers/static/graphiql/ (installed from package-lock.json).\n" +
    "graphiql.min.js is GraphiQL's own build, bundling its dependencies (versions inside may differ slightly from\n" +
    "the lock's; the licences are these); react, react-dom and graphql-ws are copied as published.\n";
  writeFileSync(join(here, "LICENSES.txt"), [header, ...keys.map((key) => sections.get(key))].join("\n" + "=".repeat(78) + "\n\n"));
  console.log(`vendored ${FILES.length} files and the licences of ${keys.length} packages into ${here}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
