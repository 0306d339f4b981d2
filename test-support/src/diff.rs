//! Readable line diffs of two outputs, for assertion messages.

use std::fmt::Write as _;

/// A line diff of two outputs for assertion messages: `-` lines only in `expected`, `+`
/// lines only in `actual`, a few unchanged lines of context. Empty when they are equal.
pub fn text_diff(expected: &[u8], actual: &[u8]) -> String {
    if expected == actual {
        return String::new();
    }
    let a: Vec<&[u8]> = split_lines(expected);
    let b: Vec<&[u8]> = split_lines(actual);
    const MAX: usize = 4000;
    if a.len() > MAX || b.len() > MAX {
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        return format!(
            "outputs differ first at line {} ({} vs {} lines); expected: {:?} actual: {:?}",
            first + 1,
            a.len(),
            b.len(),
            a.get(first).map(|l| String::from_utf8_lossy(l)),
            b.get(first).map(|l| String::from_utf8_lossy(l))
        );
    }
    // Longest common subsequence table, from the end.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &[u8])> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    const CONTEXT: usize = 2;
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.0 != ' ')
        .map(|(k, _)| k)
        .collect();
    let near = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT);
    let mut s = String::from("--- expected\n+++ actual\n");
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if *op == ' ' && !near(k) {
            if !skipped {
                s.push_str("  ...\n");
                skipped = true;
            }
            continue;
        }
        skipped = false;
        let text = String::from_utf8_lossy(line);
        let text = text
            .strip_suffix('\n')
            .map(|t| t.to_string())
            .unwrap_or_else(|| format!("{text}⏎(no newline)"));
        let _ = writeln!(s, "{op} {text}");
    }
    s
}

fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            lines.push(&data[start..=i]);
            start = i + 1;
        }
    }
    if start < data.len() {
        lines.push(&data[start..]);
    }
    lines
}
