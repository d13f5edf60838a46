//! A small regular-expression matcher for the POSIX patterns clients put in catalog queries
//! (psql's `c.relname OPERATOR(pg_catalog.~) '^(events)$'`, `n.nspname !~ '^pg_'`), and
//! SQL `LIKE`.
//!
//! Patterns compile to a Thompson NFA that is simulated breadth-first (a Pike VM), so matching
//! costs O(pattern x text) whatever the pattern: no backtracking blow-up on hostile input.
//! Supported: literals, `.`, `[...]` classes with ranges and negation, `\d \w \s` and their
//! negations, escapes, `^`, `$`, `( )`, `(?: )`, `|`, `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}`.

use crate::sql::error::SqlError;

/// Longest pattern accepted, in characters.
const MAX_PATTERN: usize = 1_000;
/// Most NFA instructions (bounded repetition expands).
const MAX_PROGRAM: usize = 10_000;
/// Deepest group nesting.
const MAX_NESTING: usize = 32;

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
    Start,
    End,
    Group(Box<Node>),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

#[derive(Debug, Clone)]
enum Inst {
    Char(char),
    Any,
    Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
    Start,
    End,
    Split(usize, usize),
    Jmp(usize),
    Match,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    prog: Vec<Inst>,
    case_insensitive: bool,
}

fn unsupported(pattern: &str, why: &str) -> SqlError {
    SqlError::unsupported(
        format!(
            "regular expression {:?} ({why})",
            pattern.chars().take(60).collect::<String>()
        ),
        "catalog patterns support literals, ., [...], \\d \\w \\s, ^, $, groups, |, *, +, ?, {n,m}",
    )
}

struct PatternParser<'a> {
    chars: Vec<char>,
    pos: usize,
    source: &'a str,
    depth: usize,
}

impl PatternParser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alt(&mut self) -> Result<Node, SqlError> {
        let mut branches = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat()?);
        }
        Ok(if branches.len() == 1 {
            branches.remove(0)
        } else {
            Node::Alt(branches)
        })
    }

    fn concat(&mut self) -> Result<Node, SqlError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.repeat(atom)?);
        }
        Ok(Node::Concat(items))
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return None;
        }
        self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .parse()
            .ok()
    }

    fn repeat(&mut self, mut node: Node) -> Result<Node, SqlError> {
        loop {
            let (min, max) = match self.peek() {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                Some('{') => {
                    let save = self.pos;
                    self.pos += 1;
                    let Some(min) = self.number() else {
                        self.pos = save;
                        return Ok(node);
                    };
                    let max = if self.peek() == Some(',') {
                        self.pos += 1;
                        self.number()
                    } else {
                        Some(min)
                    };
                    if self.peek() != Some('}') {
                        return Err(unsupported(self.source, "malformed {n,m}"));
                    }
                    if min > 100 || max.is_some_and(|m| m > 100 || m < min) {
                        return Err(unsupported(self.source, "repetition bound over 100"));
                    }
                    (min, max)
                }
                _ => return Ok(node),
            };
            self.pos += 1;
            // A lazy-quantifier `?` changes nothing for a yes/no match.
            if self.peek() == Some('?') {
                self.pos += 1;
            }
            node = Node::Repeat {
                node: Box::new(node),
                min,
                max,
            };
        }
    }

    fn escape(&mut self) -> Result<Node, SqlError> {
        let Some(c) = self.peek() else {
            return Err(unsupported(self.source, "trailing backslash"));
        };
        self.pos += 1;
        let digit = vec![('0', '9')];
        let word = vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')];
        let space = vec![(' ', ' '), ('\t', '\r')];
        Ok(match c {
            'd' => Node::Class {
                ranges: digit,
                negated: false,
            },
            'D' => Node::Class {
                ranges: digit,
                negated: true,
            },
            'w' => Node::Class {
                ranges: word,
                negated: false,
            },
            'W' => Node::Class {
                ranges: word,
                negated: true,
            },
            's' => Node::Class {
                ranges: space,
                negated: false,
            },
            'S' => Node::Class {
                ranges: space,
                negated: true,
            },
            'n' => Node::Char('\n'),
            't' => Node::Char('\t'),
            c if c.is_ascii_alphanumeric() => {
                return Err(unsupported(self.source, "unsupported escape"))
            }
            c => Node::Char(c),
        })
    }

    fn class(&mut self) -> Result<Node, SqlError> {
        let mut negated = false;
        if self.peek() == Some('^') {
            negated = true;
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(unsupported(self.source, "unterminated ["));
            };
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            if c == '[' && self.peek() == Some(':') {
                return Err(unsupported(self.source, "character class names"));
            }
            let lo = if c == '\\' {
                let Some(e) = self.peek() else {
                    return Err(unsupported(self.source, "trailing backslash"));
                };
                self.pos += 1;
                e
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']') {
                self.pos += 1;
                let hi = self.chars[self.pos];
                self.pos += 1;
                if hi < lo {
                    return Err(unsupported(self.source, "invalid range"));
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(Node::Class { ranges, negated })
    }

    fn atom(&mut self) -> Result<Node, SqlError> {
        let Some(c) = self.peek() else {
            return Err(unsupported(self.source, "unexpected end"));
        };
        self.pos += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '\\' => self.escape()?,
            '[' => self.class()?,
            '(' => {
                if self.chars.get(self.pos..self.pos + 2) == Some(&['?', ':']) {
                    self.pos += 2;
                } else if self.peek() == Some('?') {
                    return Err(unsupported(self.source, "lookaround"));
                }
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(unsupported(self.source, "groups nested too deeply"));
                }
                let inner = self.alt()?;
                self.depth -= 1;
                if self.peek() != Some(')') {
                    return Err(unsupported(self.source, "unbalanced ("));
                }
                self.pos += 1;
                Node::Group(Box::new(inner))
            }
            '*' | '+' | '?' | '{' => return Err(unsupported(self.source, "nothing to repeat")),
            c => Node::Char(c),
        })
    }
}

struct Compiler {
    prog: Vec<Inst>,
    /// Nodes visited: bounds compiling repetitions of empty groups, which emit nothing.
    steps: usize,
}

impl Compiler {
    fn push(&mut self, i: Inst) -> Result<usize, SqlError> {
        if self.prog.len() >= MAX_PROGRAM {
            return Err(SqlError::too_complex("regular expression too large"));
        }
        self.prog.push(i);
        Ok(self.prog.len() - 1)
    }

    fn compile(&mut self, node: &Node) -> Result<(), SqlError> {
        self.steps += 1;
        if self.steps > MAX_PROGRAM * 4 {
            return Err(SqlError::too_complex("regular expression too large"));
        }
        match node {
            Node::Char(c) => {
                self.push(Inst::Char(*c))?;
            }
            Node::Any => {
                self.push(Inst::Any)?;
            }
            Node::Class { ranges, negated } => {
                self.push(Inst::Class {
                    ranges: ranges.clone(),
                    negated: *negated,
                })?;
            }
            Node::Start => {
                self.push(Inst::Start)?;
            }
            Node::End => {
                self.push(Inst::End)?;
            }
            Node::Group(inner) => self.compile(inner)?,
            Node::Concat(items) => {
                for i in items {
                    self.compile(i)?;
                }
            }
            Node::Alt(branches) => {
                let mut jumps = Vec::new();
                for (i, b) in branches.iter().enumerate() {
                    if i + 1 < branches.len() {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.compile(b)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        let next = self.prog.len();
                        self.prog[split] = Inst::Split(split + 1, next);
                    } else {
                        self.compile(b)?;
                    }
                }
                let end = self.prog.len();
                for j in jumps {
                    self.prog[j] = Inst::Jmp(end);
                }
            }
            Node::Repeat { node, min, max } => {
                for _ in 0..*min {
                    self.compile(node)?;
                }
                match max {
                    None => {
                        // L1: split L2, L3; L2: node; jmp L1; L3:
                        let split = self.push(Inst::Split(0, 0))?;
                        self.compile(node)?;
                        self.push(Inst::Jmp(split))?;
                        let end = self.prog.len();
                        self.prog[split] = Inst::Split(split + 1, end);
                    }
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.push(Inst::Split(0, 0))?);
                            self.compile(node)?;
                        }
                        let end = self.prog.len();
                        for s in splits {
                            self.prog[s] = Inst::Split(s + 1, end);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Regex {
    pub(crate) fn new(pattern: &str, case_insensitive: bool) -> Result<Regex, SqlError> {
        if pattern.chars().count() > MAX_PATTERN {
            return Err(unsupported(pattern, "pattern too long"));
        }
        let mut parser = PatternParser {
            chars: pattern.chars().collect(),
            pos: 0,
            source: pattern,
            depth: 0,
        };
        let node = parser.alt()?;
        if parser.pos != parser.chars.len() {
            return Err(unsupported(pattern, "unbalanced )"));
        }
        let mut c = Compiler {
            prog: Vec::new(),
            steps: 0,
        };
        c.compile(&node)?;
        c.push(Inst::Match)?;
        Ok(Regex {
            prog: c.prog,
            case_insensitive,
        })
    }

    /// Program size, a measure of matching cost.
    pub(crate) fn len(&self) -> usize {
        self.prog.len()
    }

    /// Adds `pc` and everything reachable from it without consuming a character.
    fn add(&self, list: &mut Vec<usize>, seen: &mut [bool], pc: usize, at: usize, len: usize) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if pc >= self.prog.len() || seen[pc] {
                continue;
            }
            seen[pc] = true;
            match &self.prog[pc] {
                Inst::Jmp(t) => stack.push(*t),
                Inst::Split(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Inst::Start => {
                    if at == 0 {
                        stack.push(pc + 1)
                    }
                }
                Inst::End => {
                    if at == len {
                        stack.push(pc + 1)
                    }
                }
                _ => list.push(pc),
            }
        }
    }

    fn char_eq(&self, a: char, b: char) -> bool {
        a == b || (self.case_insensitive && a.to_lowercase().eq(b.to_lowercase()))
    }

    fn in_class(&self, c: char, ranges: &[(char, char)], negated: bool) -> bool {
        let hit = |c: char| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        let found = hit(c)
            || (self.case_insensitive && (c.to_lowercase().any(hit) || c.to_uppercase().any(hit)));
        found != negated
    }

    /// Whether the pattern matches anywhere in `text` (POSIX `~` semantics).
    pub(crate) fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let n = self.prog.len();
        let mut current: Vec<usize> = Vec::new();
        let mut seen = vec![false; n];
        for at in 0..=chars.len() {
            // Unanchored search: a new thread may start at every position.
            self.add(&mut current, &mut seen, 0, at, chars.len());
            if current
                .iter()
                .any(|&pc| matches!(self.prog[pc], Inst::Match))
            {
                return true;
            }
            let Some(&c) = chars.get(at) else {
                break;
            };
            let mut next = Vec::new();
            let mut next_seen = vec![false; n];
            for &pc in &current {
                let step = match &self.prog[pc] {
                    Inst::Char(x) => self.char_eq(*x, c),
                    Inst::Any => true,
                    Inst::Class { ranges, negated } => self.in_class(c, ranges, *negated),
                    _ => false,
                };
                if step {
                    self.add(&mut next, &mut next_seen, pc + 1, at + 1, chars.len());
                }
            }
            current = next;
            seen = next_seen;
        }
        false
    }
}

/// SQL `LIKE` (`%`, `_`, escape character, backslash by default).
pub(crate) fn like(
    text: &str,
    pattern: &str,
    escape: Option<char>,
    case_insensitive: bool,
) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Lit(char),
        One,
        Many,
    }
    let norm = |c: char| {
        if case_insensitive {
            c.to_lowercase().next().unwrap_or(c)
        } else {
            c
        }
    };
    let mut pat = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        if Some(c) == escape {
            if let Some(n) = it.next() {
                pat.push(P::Lit(norm(n)));
            }
        } else if c == '%' {
            if pat.last() != Some(&P::Many) {
                pat.push(P::Many);
            }
        } else if c == '_' {
            pat.push(P::One);
        } else {
            pat.push(P::Lit(norm(c)));
        }
    }
    let text: Vec<char> = text.chars().map(norm).collect();
    // Greedy match with a single backtrack point per `%`: O(text x pattern).
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(P::Lit(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(P::One) => {
                t += 1;
                p += 1;
            }
            Some(P::Many) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|x| *x == P::Many)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Regex::new(p, false).unwrap().is_match(t)
    }

    #[test]
    fn psql_patterns() {
        assert!(m("^(events)$", "events"));
        assert!(!m("^(events)$", "events2"));
        assert!(!m("^(events)$", "myevents"));
        assert!(m("^(ev.*)$", "events"));
        assert!(m("^(.*s)$", "aggregates"));
        assert!(m("^pg_", "pg_toast"));
        assert!(!m("^pg_toast", "public"));
        assert!(m("^(public)$", "public"));
        assert!(m("^(e|o)", "outbox"));
        assert!(m("^(my\\$tab)$", "my$tab"));
        assert!(m("^[a-c]gg", "aggregates"));
        assert!(!m("^[^a]", "aggregates"));
        assert!(m("^a{2}$", "aa") && !m("^a{2}$", "aaa"));
        assert!(m("^x?y+$", "yyy"));
        assert!(m("s", "schemas"));
        assert!(Regex::new("^(EVENTS)$", true).unwrap().is_match("events"));
    }

    #[test]
    fn hostile_patterns_are_bounded_or_rejected() {
        let r = Regex::new("^(a*)*(a*)*(a*)*b$", false).unwrap();
        assert!(!r.is_match(&"a".repeat(200)));
        assert!(Regex::new("(", false).is_err());
        assert!(Regex::new("a)", false).is_err());
        assert!(Regex::new("*", false).is_err());
        assert!(Regex::new("a{1000}", false).is_err());
        assert!(Regex::new(&"(".repeat(100), false).is_err());
        assert!(Regex::new(&"x".repeat(2000), false).is_err());
        assert!(Regex::new("\\", false).is_err());
        assert!(Regex::new("[", false).is_err());
        // Repeated empty groups emit no instructions; compiling them is still bounded.
        let empty = format!("{}{}", "(".repeat(30), "){100}".repeat(30));
        assert!(Regex::new(&empty, false).is_err());
    }

    #[test]
    fn like_patterns() {
        assert!(like("events", "%", Some('\\'), false));
        assert!(like("events", "events", Some('\\'), false));
        assert!(like("events", "ev%", Some('\\'), false));
        assert!(like("events", "%nt_", Some('\\'), false));
        assert!(!like("events", "event", Some('\\'), false));
        assert!(like("a_b", "a\\_b", Some('\\'), false));
        assert!(!like("axb", "a\\_b", Some('\\'), false));
        assert!(like("EVENTS", "ev%", Some('\\'), true));
        assert!(like("", "%", Some('\\'), false));
        assert!(!like("", "_", Some('\\'), false));
        assert!(like("abcabcabd", "%abd", None, false));
    }
}
