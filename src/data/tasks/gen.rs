//! The task generators: one seeded function per task drawing an example, (prompt, answer), from
//! the task's parameters. The training line is prompt + answer + "\n"; the answer is computed
//! here from what was drawn, and tests/tasks.rs checks it with an independent reading of the
//! prompt.

use crate::rng::Rng;

use super::Task;

/// An example of a task: (prompt, answer).
pub type Example = (String, String);

/// A length drawn uniformly from the task's `min..=max`.
fn length(t: &Task, rng: &mut Rng) -> usize {
    let (min, max) = (t.int("min"), t.int("max"));
    min + rng.below(max - min + 1)
}

/// `len` letters drawn from the first `alphabet` of a..z.
fn letters(rng: &mut Rng, len: usize, alphabet: usize) -> String {
    (0..len).map(|_| (b'a' + rng.below(alphabet) as u8) as char).collect()
}

/// The numbers 0..n in a seeded random order (Fisher-Yates).
pub fn shuffled(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

/// "0123+4567=" → "04690": two numbers of up to `digits` digits, zero-padded to `digits` and the
/// sum to `digits + 1`, so a digit's place is its position; with `pad=0` as they are
/// ("123+4567=" → "4690").
pub fn addition(t: &Task, rng: &mut Rng) -> Example {
    let digits = t.int("digits");
    let n = 10usize.pow(digits as u32);
    let (a, b) = (rng.below(n), rng.below(n));
    if t.int("pad") == 1 {
        (format!("{a:0digits$}+{b:0digits$}="), format!("{:0w$}", a + b, w = digits + 1))
    } else {
        (format!("{a}+{b}="), format!("{}", a + b))
    }
}

/// "hello|" → "olleh".
pub fn reverse(t: &Task, rng: &mut Rng) -> Example {
    let len = length(t, rng);
    let s = letters(rng, len, 26);
    (format!("{s}|"), s.chars().rev().collect())
}

/// "dbca|" → "abcd".
pub fn sort(t: &Task, rng: &mut Rng) -> Example {
    let len = length(t, rng);
    let s = letters(rng, len, 26);
    let mut c: Vec<char> = s.chars().collect();
    c.sort();
    (format!("{s}|"), c.into_iter().collect())
}

/// "hello|" → "hello".
pub fn copy(t: &Task, rng: &mut Rng) -> Example {
    let len = length(t, rng);
    let s = letters(rng, len, 26);
    (format!("{s}|"), s)
}

/// "abc*3=" → "abcabcabc": a string of 1..=max letters, 2..=times times.
pub fn repeat(t: &Task, rng: &mut Rng) -> Example {
    let len = 1 + rng.below(t.int("max"));
    let s = letters(rng, len, 26);
    let k = 2 + rng.below(t.int("times") - 1);
    (format!("{s}*{k}="), s.repeat(k))
}

/// "10110=" → "11011": the parity of every prefix, the last digit the answer (whether the count
/// of ones is odd); with `scratch=0` only that digit ("1").
pub fn parity(t: &Task, rng: &mut Rng) -> Example {
    let len = length(t, rng);
    let bits: Vec<usize> = (0..len).map(|_| rng.below(2)).collect();
    let running: String = bits
        .iter()
        .scan(0, |odd, b| {
            *odd ^= b;
            Some(char::from(b'0' + *odd as u8))
        })
        .collect();
    let answer = if t.int("scratch") == 1 { running } else { running[len - 1..].to_string() };
    (format!("{}=", bits.iter().map(|b| b.to_string()).collect::<String>()), answer)
}

/// "([])(=" → "n": whether round and square brackets are balanced. Half the examples are
/// balanced strings of 1..=pairs pairs; the other half have one bracket replaced by another,
/// which always unbalances them.
pub fn dyck(t: &Task, rng: &mut Rng) -> Example {
    let pairs = 1 + rng.below(t.int("pairs"));
    let (mut s, mut open, mut stack) = (Vec::with_capacity(2 * pairs), 0, Vec::new());
    while s.len() < 2 * pairs {
        if open < pairs && (stack.is_empty() || rng.below(2) == 0) {
            let b = if rng.below(2) == 0 { '(' } else { '[' };
            s.push(b);
            stack.push(b);
            open += 1;
        } else {
            s.push(if stack.pop() == Some('(') { ')' } else { ']' });
        }
    }
    if rng.below(2) == 1 {
        let i = rng.below(s.len());
        let others: Vec<char> = "()[]".chars().filter(|&c| c != s[i]).collect();
        s[i] = others[rng.below(others.len())];
    }
    let s: String = s.into_iter().collect();
    let answer = if balanced(&s) { "y" } else { "n" };
    (format!("{s}="), answer.to_string())
}

/// Whether `s` is a balanced string of round and square brackets.
fn balanced(s: &str) -> bool {
    let mut stack = Vec::new();
    for c in s.chars() {
        match c {
            '(' | '[' => stack.push(c),
            ')' if stack.pop() != Some('(') => return false,
            ']' if stack.pop() != Some('[') => return false,
            _ => {}
        }
    }
    stack.is_empty()
}

/// "12,45,07,30:37=" → "25n,--n,30y,07y=2,3": the positions of the only two numbers that add up
/// to the target. `n` distinct numbers below `max`, drawn again until exactly one pair sums to the
/// target. The answer first writes each number's complement (target minus it; dashes where that is
/// negative) marked y where another number of the list is that complement, so the positions are
/// those of the two y marks. Every number is zero-padded to the width of the largest target, and
/// no number is half the target (a number cannot pair with itself). With `scratch=0` the numbers
/// are written as they are and the answer is the positions alone ("12,45,7,30:37=" → "2,3").
pub fn two_sum(t: &Task, rng: &mut Rng) -> Example {
    let (n, max, scratch) = (t.int("n"), t.int("max"), t.int("scratch") == 1);
    loop {
        let mut xs: Vec<usize> = Vec::with_capacity(n);
        while xs.len() < n {
            let x = rng.below(max);
            if !xs.contains(&x) {
                xs.push(x);
            }
        }
        let i = rng.below(n);
        let j = (i + 1 + rng.below(n - 1)) % n;
        let (i, j) = (i.min(j), i.max(j));
        let target = xs[i] + xs[j];
        let matches = (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).filter(|&(a, b)| xs[a] + xs[b] == target);
        if matches.count() != 1 || (scratch && xs.iter().any(|&x| 2 * x == target)) {
            continue;
        }
        if !scratch {
            let list: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
            return (format!("{}:{target}=", list.join(",")), format!("{i},{j}"));
        }
        let w = (2 * (max - 1)).to_string().len();
        let list: Vec<String> = xs.iter().map(|x| format!("{x:0w$}")).collect();
        let complement = |x: usize| match target.checked_sub(x) {
            Some(c) => format!("{c:0w$}{}", if xs.contains(&c) { 'y' } else { 'n' }),
            None => format!("{}n", "-".repeat(w)),
        };
        let marked: Vec<String> = xs.iter().map(|&x| complement(x)).collect();
        return (format!("{}:{target:0w$}=", list.join(",")), format!("{}={i},{j}", marked.join(",")));
    }
}

/// "12+90=" → "5" for p = 97: the example of one (a, b) pair.
pub fn modular(p: usize, pair: usize) -> Example {
    let (a, b) = (pair / p, pair % p);
    (format!("{a}+{b}="), format!("{}", (a + b) % p))
}

/// "a1b5c3:cb=" → "c3b5": `pairs` distinct letter keys with digit values, then `queries` of the
/// keys (drawn with replacement); the answer writes each asked key, then its value. Having just
/// written a key, the model finds its earlier copy and reads the token after it: an induction head.
pub fn associative_recall(t: &Task, rng: &mut Rng) -> Example {
    let pairs = t.int("pairs");
    let keys: Vec<char> = shuffled(26, rng).into_iter().take(pairs).map(|i| (b'a' + i as u8) as char).collect();
    let values: Vec<usize> = (0..pairs).map(|_| rng.below(10)).collect();
    let asked: Vec<usize> = (0..t.int("queries")).map(|_| rng.below(pairs)).collect();
    let listed: String = keys.iter().zip(&values).map(|(k, v)| format!("{k}{v}")).collect();
    let queries: String = asked.iter().map(|&q| keys[q]).collect();
    let answer: String = asked.iter().map(|&q| format!("{}{}", keys[q], values[q])).collect();
    (format!("{listed}:{queries}="), answer)
}

/// "abcab:a=" → "2": how often a letter occurs in a string over the first `alphabet` letters.
pub fn counting(t: &Task, rng: &mut Rng) -> Example {
    let len = length(t, rng);
    let alphabet = t.int("alphabet");
    let s = letters(rng, len, alphabet);
    let q = (b'a' + rng.below(alphabet) as u8) as char;
    (format!("{s}:{q}="), s.chars().filter(|&c| c == q).count().to_string())
}

/// "47*83=" → "3901": two numbers of up to `digits` digits; with `scratch=1` zero-padded, and the
/// partial products written first ("47*83=" → "0141+3760=3901"; "07*83=" → "0021+0560=0581").
pub fn multiplication(t: &Task, rng: &mut Rng) -> Example {
    let digits = t.int("digits");
    let n = 10usize.pow(digits as u32);
    let (a, b) = (rng.below(n), rng.below(n));
    if t.int("scratch") == 0 {
        return (format!("{a}*{b}="), format!("{}", a * b));
    }
    // a times each digit of b from the last, shifted to its place, then their sum: every number
    // zero-padded to the product's width
    let w = 2 * digits;
    let parts: Vec<String> = (0..digits)
        .map(|i| {
            let place = 10usize.pow(i as u32);
            format!("{:0w$}", a * (b / place % 10) * place)
        })
        .collect();
    (format!("{a:0digits$}*{b:0digits$}="), format!("{}={:0w$}", parts.join("+"), a * b))
}

/// "37*25*1=" → "12": `n` digits, a `*` after each marked one (at least one is); the sum of the
/// marked digits.
pub fn marked_addition(t: &Task, rng: &mut Rng) -> Example {
    let n = t.int("n");
    let digits: Vec<usize> = (0..n).map(|_| rng.below(10)).collect();
    let mut marked: Vec<bool> = (0..n).map(|_| rng.below(2) == 1).collect();
    if !marked.contains(&true) {
        marked[rng.below(n)] = true;
    }
    let prompt: String =
        digits.iter().zip(&marked).map(|(d, &m)| if m { format!("{d}*") } else { d.to_string() }).collect();
    let sum: usize = digits.iter().zip(&marked).filter(|(_, &m)| m).map(|(d, _)| d).sum();
    (format!("{prompt}="), sum.to_string())
}

/// "abXcdYe=" → "XY": which of X and Y come, in order, at two places among `len` noise letters
/// (a..h).
pub fn temporal_order(t: &Task, rng: &mut Rng) -> Example {
    let len = t.int("len");
    let mut s: Vec<char> = letters(rng, len, 8).chars().collect();
    let at = shuffled(len, rng);
    let (i, j) = (at[0].min(at[1]), at[0].max(at[1]));
    let mark = |r: usize| if r == 0 { 'X' } else { 'Y' };
    (s[i], s[j]) = (mark(rng.below(2)), mark(rng.below(2)));
    let answer: String = [s[i], s[j]].iter().collect();
    (format!("{}=", s.iter().collect::<String>()), answer)
}
