import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The repository root: doc paths and `--schema proto` resolve from here, as for a reader. */
export const root = fileURLToPath(new URL("../../", import.meta.url));

/** The documents a reader is sent through: the README and every page under docs/. */
export function docFiles(): string[] {
  const docs = readdirSync(`${root}docs`).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`);
  return ["README.md", ...docs];
}

/** The marker that keeps a block out of the suite; the rest of its line says why. */
export const SKIP_MARKER = "# not run by the suite:";

export interface Command {
  /** The command as pasted: continuation lines joined, comments removed. */
  text: string;
  /** What the comment lines just above it promise: `exits N`, else 0. */
  expectedExit: number;
}

export interface ShBlock {
  file: string;
  /** 1-based line of the opening fence, for messages. */
  line: number;
  /** Set when the block carries SKIP_MARKER: the reason given. */
  skipReason: string | undefined;
  commands: Command[];
}

/** Every ```sh block of a markdown file, split into commands. */
export function shBlocks(file: string): ShBlock[] {
  const lines = readFileSync(`${root}${file}`, "utf8").split("\n");
  const blocks: ShBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== "```sh") continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i]!.trim() !== "```"; i++) body.push(lines[i]!);
    const skip = body.find((l) => l.trim().startsWith(SKIP_MARKER));
    blocks.push({
      file,
      line: start + 1,
      skipReason: skip === undefined ? undefined : skip.trim().slice(SKIP_MARKER.length).trim(),
      commands: splitCommands(body),
    });
  }
  return blocks;
}

/**
 * Joins backslash continuations and drops comment lines; the comments right
 * above a command may promise its exit status with "exits N" (buf curl exits
 * with the gRPC code × 8 when a call fails).
 */
function splitCommands(body: string[]): Command[] {
  const commands: Command[] = [];
  let comments: string[] = [];
  let current = "";
  for (const raw of body) {
    const line = raw.trim();
    if (current === "" && (line === "" || line.startsWith("#"))) {
      if (line === "") comments = [];
      else comments.push(line);
      continue;
    }
    current += (current === "" ? "" : " ") + line.replace(/\\$/, "").trim();
    if (line.endsWith("\\")) continue;
    const promised = /exits (\d+)/.exec(comments.join(" "));
    commands.push({ text: stripTrailingComment(current), expectedExit: promised === null ? 0 : Number(promised[1]) });
    current = "";
    comments = [];
  }
  return commands;
}

/** `cmd ...   # note` → `cmd ...`; a # inside quotes is kept. */
function stripTrailingComment(command: string): string {
  let quote: string | undefined;
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === "#" && i > 0 && /\s/.test(command[i - 1]!)) {
      return command.slice(0, i).trim();
    }
  }
  return command.trim();
}

/** The service address the docs use. */
export const DOC_ADDRESS = /(?:127\.0\.0\.1|localhost):8080/g;

/**
 * A command the suite can run against the service: `buf curl` or `curl` to the docs' address, nothing
 * else — no second command chained on, piped to, or substituted in, since the suite runs it with sh.
 */
export function isServiceCall(command: string): boolean {
  return /^(npx )?(buf curl|curl) /.test(command) && new RegExp(DOC_ADDRESS.source).test(command) && !/[;&|`]|\$\(/.test(command);
}
