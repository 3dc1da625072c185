// Lexes and parses Power Query M files with Microsoft's parser (@microsoft/powerquery-parser), default settings.
// Usage: node tests/powerquery/parse.mjs FILE...
// Prints "ok FILE" or "error FILE: MESSAGE (line L, column C)" for each file; exits 1 if any file failed.
import { readFileSync } from "node:fs";
import pqp from "@microsoft/powerquery-parser";

const { DefaultSettings, TaskUtils } = pqp;

// Positions in the parser are 0-based; people count lines and columns from 1.
function at(lineNumber, columnNumber) {
    return `line ${lineNumber + 1}, column ${columnNumber + 1}`;
}

// Where a parse error is: the token it found, the token that started an unterminated sequence, or the end of the text.
function parseErrorPosition(innerError, lexerSnapshot) {
    if (innerError.positionStart) {
        return at(innerError.positionStart.lineNumber, innerError.positionStart.columnNumber);
    }
    if (innerError.foundToken) {
        return at(innerError.foundToken.token.positionStart.lineNumber, innerError.foundToken.columnNumber);
    }
    const tokens = lexerSnapshot ? lexerSnapshot.tokens : [];
    if (tokens.length > 0) {
        const last = tokens[tokens.length - 1];
        // the last token's last character (a token spanning lines, such as a text literal, ends on its last line)
        const lastColumn = last.positionStart.lineNumber === last.positionEnd.lineNumber
            ? lexerSnapshot.columnNumberStartFrom(last) + last.data.length - 1
            : last.positionEnd.lineCodeUnit - 1;
        return `end of text, after ${at(last.positionEnd.lineNumber, lastColumn)}`;
    }
    return "end of text";
}

function lexErrorMessage(error) {
    const inner = error.innerError;
    if (inner && inner.errorLineMap) {
        // Each line that failed to lex has its own error; report them all.
        const parts = [];
        for (const [lineNumber, line] of inner.errorLineMap) {
            const lineInner = line.error.innerError;
            const position = lineInner && lineInner.graphemePosition
                ? at(lineInner.graphemePosition.lineNumber, lineInner.graphemePosition.columnNumber)
                : at(lineNumber, 0);
            parts.push(`${line.error.message} (${position})`);
        }
        return `lex error: ${parts.join("; ")}`;
    }
    if (inner && inner.graphemePosition) {
        return `lex error: ${error.message} (${at(inner.graphemePosition.lineNumber, inner.graphemePosition.columnNumber)})`;
    }
    return `lex error: ${error.message}`;
}

async function check(path) {
    let text;
    try {
        text = readFileSync(path, "utf8");
    } catch (exc) {
        return `cannot read: ${exc.message}`;
    }
    if (text.trim() === "") {
        return "empty file";
    }
    const task = await TaskUtils.tryLexParse(DefaultSettings, text);
    if (TaskUtils.isParseStageOk(task)) {
        return undefined;
    }
    if (TaskUtils.isLexStageError(task)) {
        return lexErrorMessage(task.error);
    }
    if (TaskUtils.isParseStageCommonError(task)) {
        return `parser failure: ${task.error.message}`;
    }
    if (TaskUtils.isParseStageParseError(task)) {
        const inner = task.error.innerError;
        return `parse error: ${inner.message} (${parseErrorPosition(inner, task.lexerSnapshot)})`;
    }
    return `unexpected parser result: ${task.stage} ${task.resultKind}`;
}

const paths = process.argv.slice(2);
if (paths.length === 0) {
    console.error("usage: node parse.mjs FILE...");
    process.exit(2);
}
let failed = 0;
for (const path of paths) {
    const problem = await check(path);
    if (problem === undefined) {
        console.log(`ok ${path}`);
    } else {
        failed += 1;
        console.log(`error ${path}: ${problem}`);
    }
}
process.exit(failed > 0 ? 1 : 0);
