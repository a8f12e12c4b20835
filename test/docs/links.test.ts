import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { docFiles, root } from "./doc-blocks.js";

/** Relative links of a markdown file (inline `[text](target)` and images), outside code blocks. */
function relativeLinks(file: string): string[] {
  const text = readFileSync(join(root, file), "utf8").replace(/```[\s\S]*?```/g, "");
  const links = [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
  return links.filter((l) => !/^[a-z]+:/i.test(l) && !l.startsWith("#"));
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchors(file: string): Set<string> {
  const text = readFileSync(join(root, file), "utf8").replace(/```[\s\S]*?```/g, "");
  return new Set([...text.matchAll(/^#+ (.+)$/gm)].map((m) => m[1]!.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-")));
}

describe.each(docFiles())("links in %s", (file) => {
  it("point to files that exist, and to headings that exist", () => {
    const broken: string[] = [];
    for (const link of relativeLinks(file)) {
      const [path, anchor] = link.split("#") as [string, string | undefined];
      const target = path === "" ? file : join(dirname(file), path);
      if (!existsSync(join(root, target))) broken.push(`${link}: no such file`);
      else if (anchor !== undefined && target.endsWith(".md") && !anchors(target).has(anchor)) broken.push(`${link}: no such heading`);
    }
    expect(broken).toEqual([]);
  });

  it("same-page anchors name headings that exist", () => {
    const text = readFileSync(join(root, file), "utf8").replace(/```[\s\S]*?```/g, "");
    const own = anchors(file);
    const missing = [...text.matchAll(/\]\(#([^)\s]+)\)/g)].map((m) => m[1]!).filter((a) => !own.has(a));
    expect(missing).toEqual([]);
  });
});
