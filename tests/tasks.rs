//! The built-in tasks: every generated answer checked by an independent reading of its prompt,
//! determinism per seed, today's three tasks unchanged, modular addition's held-out pairs
//! disjoint from its training pairs, and bad task names and parameters refused.

use std::collections::HashSet;

use wgpt::data::tasks::HELD_OUT_EXAMPLES;
use wgpt::data::{Task, TASKS};

/// The answer to `prompt` of task `name` (parameters `task`), worked out from the prompt's text
/// alone, without the generators.
fn check(task: &Task, prompt: &str) -> String {
    let body = prompt.strip_suffix('=').or_else(|| prompt.strip_suffix('|')).expect("a prompt ends in = or |");
    let num = |s: &str| s.parse::<usize>().expect("a number");
    match task.spec.name {
        "addition" | "multiplication" | "modular-addition" => arithmetic(task, prompt, body),
        "reverse" => body.chars().rev().collect(),
        "sort" => {
            let mut c: Vec<char> = body.chars().collect();
            c.sort_unstable();
            c.into_iter().collect()
        }
        "copy" => body.to_string(),
        "repeat" => {
            let (s, k) = body.split_once('*').expect("string*k");
            s.repeat(num(k))
        }
        "parity" => {
            let prefixes = (1..=body.len()).map(|n| (body[..n].matches('1').count() % 2).to_string());
            let all: String = prefixes.collect();
            if task.int("scratch") == 1 {
                all
            } else {
                all[all.len() - 1..].to_string()
            }
        }
        "dyck" => {
            // remove innermost pairs until none is left: balanced iff nothing remains
            let mut s = body.to_string();
            while s.contains("()") || s.contains("[]") {
                s = s.replace("()", "").replace("[]", "");
            }
            if s.is_empty() { "y" } else { "n" }.to_string()
        }
        "two-sum" => two_sum(task, prompt, body),
        "associative-recall" => {
            let (pairs, asked) = body.split_once(':').expect("pairs:keys");
            let c: Vec<char> = pairs.chars().collect();
            let keys: HashSet<char> = c.chunks(2).map(|kv| kv[0]).collect();
            assert_eq!(keys.len(), c.len() / 2, "{prompt}: keys must be distinct");
            let value = |key: char| c.chunks(2).find(|kv| kv[0] == key).expect("the key is listed")[1];
            asked.chars().flat_map(|key| [key, value(key)]).collect()
        }
        "counting" => {
            let (s, q) = body.split_once(':').expect("string:letter");
            s.matches(q).count().to_string()
        }
        "marked-addition" => {
            let c: Vec<char> = body.chars().collect();
            let sum: u32 = (0..c.len())
                .filter(|&i| c.get(i + 1) == Some(&'*') && c[i] != '*')
                .map(|i| c[i].to_digit(10).unwrap())
                .sum();
            sum.to_string()
        }
        "temporal-order" => body.chars().filter(|c| c.is_ascii_uppercase()).collect(),
        other => panic!("no checker for task {other}: add one"),
    }
}

/// The answer to an addition, multiplication or modular addition prompt (`body`: the prompt
/// without its `=`), read from its text.
fn arithmetic(task: &Task, prompt: &str, body: &str) -> String {
    let num = |s: &str| s.parse::<usize>().expect("a number");
    let (op, f): (char, fn(usize, usize) -> usize) =
        if task.spec.name == "multiplication" { ('*', |a, b| a * b) } else { ('+', |a, b| a + b) };
    let (a, b) = body.split_once(op).expect("two operands");
    let r = f(num(a), num(b));
    if task.spec.name == "modular-addition" {
        (r % task.int("p")).to_string()
    } else if task.spec.name == "multiplication" && task.int("scratch") == 1 {
        // a times each digit of b, last digit first, shifted: the long multiplication's rows
        let w = 2 * task.int("digits");
        assert!(a.len() * 2 == w && b.len() * 2 == w, "{prompt}: operands padded to {} digits", w / 2);
        let rows: Vec<String> = (b.chars().rev().enumerate())
            .map(|(i, d)| format!("{:0w$}", num(a) * num(&d.to_string()) * 10usize.pow(i as u32)))
            .collect();
        format!("{}={r:0w$}", rows.join("+"))
    } else if task.spec.name == "addition" && task.int("pad") == 1 {
        // both operands written at the full width, the sum one digit wider
        let w = task.int("digits");
        assert!(a.len() == w && b.len() == w, "{prompt}: operands padded to {w} digits");
        format!("{r:0width$}", width = w + 1)
    } else {
        r.to_string()
    }
}

/// The positions of the pair adding to a two-sum prompt's target, after (`scratch=1`) each
/// number's complement marked y where it is listed, read from its text.
fn two_sum(task: &Task, prompt: &str, body: &str) -> String {
    let num = |s: &str| s.parse::<usize>().expect("a number");
    let (list, target) = body.split_once(':').expect("list:target");
    let xs: Vec<usize> = list.split(',').map(num).collect();
    let pairs: Vec<String> = (0..xs.len())
        .flat_map(|i| (i + 1..xs.len()).map(move |j| (i, j)))
        .filter(|&(i, j)| xs[i] + xs[j] == num(target))
        .map(|(i, j)| format!("{i},{j}"))
        .collect();
    assert_eq!(pairs.len(), 1, "{prompt}: exactly one pair must sum to the target");
    if task.int("scratch") == 0 {
        return pairs[0].clone();
    }
    // every field as wide as the largest target; each number's complement, marked
    let w = (2 * (task.int("max") - 1)).to_string().len();
    assert!(list.split(',').chain([target]).all(|f| f.len() == w), "{prompt}: fields padded to {w}");
    let t = num(target) as i64;
    assert!(xs.iter().all(|&x| 2 * x as i64 != t), "{prompt}: no number is half the target");
    let marked: Vec<String> = (xs.iter().map(|&x| t - x as i64))
        .map(|c| {
            let listed = if xs.iter().any(|&x| x as i64 == c) { "y" } else { "n" };
            if c < 0 {
                format!("{}{listed}", "-".repeat(w))
            } else {
                format!("{c:0w$}{listed}")
            }
        })
        .collect();
    format!("{}={}", marked.join(","), pairs[0])
}

/// Every task at its defaults and at a few parameter settings.
fn variants() -> Vec<Task> {
    let mut specs: Vec<String> = TASKS.iter().map(|t| t.name.to_string()).collect();
    specs.extend(
        [
            "addition:digits=1",
            "addition:digits=9,pad=0",
            "reverse:min=1,max=20",
            "repeat:max=12,times=9",
            "parity:min=1,max=24",
            "parity:max=12,scratch=0",
            "dyck:pairs=12",
            "two-sum:n=8,max=20",
            "two-sum:n=2,max=999",
            "two-sum:n=6,scratch=0",
            "modular-addition:p=23,frac=0.6",
            "associative-recall:pairs=10",
            "associative-recall:pairs=1,queries=3",
            "counting:min=1,max=24,alphabet=26",
            "multiplication:digits=4",
            "multiplication:digits=1",
            "multiplication:digits=3,scratch=0",
            "marked-addition:n=1",
            "temporal-order:len=3",
        ]
        .map(String::from),
    );
    specs.iter().map(|s| Task::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))).collect()
}

#[test]
fn at_least_twelve_tasks_with_the_fixed_names() {
    let names: Vec<&str> = TASKS.iter().map(|t| t.name).collect();
    for want in [
        "addition",
        "reverse",
        "sort",
        "copy",
        "repeat",
        "parity",
        "dyck",
        "two-sum",
        "modular-addition",
        "associative-recall",
        "counting",
        "multiplication",
    ] {
        assert!(names.contains(&want), "task {want} is missing from {names:?}");
    }
    for t in TASKS {
        assert!(!t.describe.is_empty() && !t.describe.contains('\n'), "{}: a one-line description", t.name);
        for p in t.params {
            assert!(p.min <= p.default && p.default <= p.max, "{}: {} default outside its bounds", t.name, p.name);
        }
    }
}

#[test]
fn every_answer_is_right() {
    for task in variants() {
        let mut lines = task.train_examples(500, 11);
        lines.extend(task.held_out(HELD_OUT_EXAMPLES, 11));
        for (prompt, answer) in lines {
            assert_eq!(answer, check(&task, &prompt), "task {}: {prompt}{answer}", task.spec());
            assert!(!prompt.contains('\n') && !answer.contains('\n') && !answer.is_empty());
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_data() {
    for task in variants() {
        assert_eq!(task.corpus(300, 5), task.corpus(300, 5), "{}", task.spec());
        assert_eq!(task.held_out(50, 5), task.held_out(50, 5), "{}", task.spec());
        assert_ne!(task.corpus(300, 5), task.corpus(300, 6), "{}: another seed, other data", task.spec());
        assert_eq!(task.examples(3, 5).len(), 3);
        assert_eq!(Task::parse(&task.spec()).unwrap(), task, "spec() reads back");
    }
}

/// FNV-1a of a string, to pin a corpus in a few bytes.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn todays_tasks_give_todays_data() {
    // hashes of the corpus (seed 1337, 1000 lines) and held-out examples (seed 7, 50) made by the
    // generators before the registry (commit 1152d4d); addition's old format is `pad=0` now
    let want = [
        ("addition:pad=0", "5812+2640=8452", 0x8392_214f_b3b8_f671u64, 0xb0b9_d83c_d52a_b9c3u64),
        ("reverse", "yxg|gxy", 0x591b_a958_2ca8_30d5, 0xc744_946a_28dd_5195),
        ("sort", "yxg|gxy", 0x786e_bb63_cd92_73c7, 0xca9c_0e6c_2db1_19d7),
        // two-sum as it was before its scratchpad (commit ae4c25e)
        ("two-sum:scratch=0", "12,40,1,14:13=0,2", 0xcef4_0b8a_66a9_07c8, 0x21a5_b501_aa87_e31d),
    ];
    for (name, first, corpus, held) in want {
        let t = Task::parse(name).unwrap();
        let c = t.corpus(1000, 1337);
        assert_eq!(c.lines().next(), Some(first), "{name}");
        assert_eq!(fnv(&c), corpus, "{name}: corpus changed");
        let h: String = t.held_out(50, 7).into_iter().map(|(p, a)| format!("{p}{a}\n")).collect();
        assert_eq!(fnv(&h), held, "{name}: held-out examples changed");
    }
}

#[test]
fn a_recorded_task_keeps_the_defaults_it_was_made_with() {
    // addition pads by default now; a run records it so (spec() names a changed default), and a
    // run recorded before, with the bare name, reads as the unpadded addition it trained on
    let padded = Task::parse("addition").unwrap();
    assert_eq!(padded.spec(), "addition:pad=1");
    assert_eq!(Task::recorded(&padded.spec()).unwrap(), padded);
    assert_eq!(Task::recorded("addition").unwrap(), Task::parse("addition:pad=0").unwrap());
    assert_eq!(Task::recorded("addition:digits=3").unwrap(), Task::parse("addition:digits=3,pad=0").unwrap());
    assert_eq!(Task::recorded("reverse:max=9").unwrap(), Task::parse("reverse:max=9").unwrap());
    assert_eq!(Task::recorded("addition").unwrap().corpus(5, 1337).lines().next(), Some("5812+2640=8452"));
    assert_eq!(padded.corpus(5, 1337).lines().next(), Some("5812+2640=08452"));
    // multiplication writes its rows by default now
    assert_eq!(Task::parse("multiplication").unwrap().spec(), "multiplication:scratch=1");
    assert_eq!(Task::recorded("multiplication").unwrap(), Task::parse("multiplication:scratch=0").unwrap());
    // and two-sum its complements
    assert_eq!(Task::parse("two-sum").unwrap().spec(), "two-sum:scratch=1");
    assert_eq!(Task::recorded("two-sum:n=5").unwrap(), Task::parse("two-sum:n=5,scratch=0").unwrap());
}

#[test]
fn modular_addition_holds_out_unseen_pairs() {
    for spec in ["modular-addition", "modular-addition:p=31,frac=0.3", "modular-addition:p=113,frac=0.9"] {
        let t = Task::parse(spec).unwrap();
        let (train, held) = t.pairs(42);
        let p = t.int("p");
        assert_eq!(train.len() + held.len(), p * p, "{spec}: every pair once");
        let seen: HashSet<usize> = train.iter().copied().collect();
        assert!(held.iter().all(|x| !seen.contains(x)), "{spec}: a held-out pair is trained on");
        let lines: HashSet<String> = t.corpus(20_000, 42).lines().map(String::from).collect();
        let held_out = t.held_out(HELD_OUT_EXAMPLES, 42);
        assert_eq!(held_out.len(), HELD_OUT_EXAMPLES, "{spec}");
        for (prompt, answer) in held_out {
            assert!(!lines.contains(&format!("{prompt}{answer}")), "{spec}: {prompt}{answer} is in the corpus");
        }
        assert_ne!(t.pairs(43).0, train, "{spec}: the seed chooses the split");
    }
}

#[test]
fn bad_tasks_are_refused_naming_the_parameters() {
    let cases = [
        ("subtraction", "unknown task"),
        ("reverse:len=3", "no parameter \"len\""),
        ("reverse:max", "not key=value"),
        ("reverse:max=ten", "not a number"),
        ("reverse:max=2.5", "integer"),
        ("reverse:max=99", "1..24"),
        ("reverse:max=0", "1..24"),
        ("reverse:min=9,max=4", "min=9 is more than max=4"),
        ("reverse:max=5,max=6", "given twice"),
        ("modular-addition:frac=2", "0.05..0.95"),
        ("modular-addition:frac=NaN", "0.05..0.95"),
        ("modular-addition:p=11", "held-out"),
        ("addition:digits=-1", "1..9"),
    ];
    for (spec, says) in cases {
        let e = Task::parse(spec).expect_err(spec).to_string();
        assert!(e.contains(says), "{spec}: {e:?} should say {says:?}");
        if !spec.starts_with("subtraction") {
            assert!(e.contains("parameters are") || e.contains("raise p"), "{spec}: {e:?} should name the parameters");
        }
    }
    assert!(Task::parse("subtraction").unwrap_err().to_string().contains("modular-addition"), "lists the tasks");
}

#[test]
fn the_page_and_the_cli_list_every_task() {
    let manifest = wgpt::web::protocol::Manifest::new();
    let names: Vec<&str> = manifest.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, TASKS.iter().map(|t| t.name).collect::<Vec<_>>());
    for t in &manifest.tasks {
        assert_eq!(t.examples.len(), 3, "{}: examples to show before training", t.name);
        assert_eq!(t.params.len(), Task::parse(&t.name).unwrap().values.len());
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt")).arg("tasks").output().expect("run wgpt");
    assert!(o.status.success());
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), TASKS.len(), "{out}");
    for (line, t) in lines.iter().zip(TASKS) {
        assert_eq!(line.split_whitespace().next(), Some(t.name), "a line per task, its name first: {line}");
        assert!(line.contains(t.describe) && line.contains(&t.params_line()), "{line}");
    }
}

#[test]
fn wgpt_train_refuses_a_bad_task() {
    for (task, says) in [("reverse:max=99", "its parameters are min=3"), ("nope", "unknown task \"nope\"")] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(["train", "--task", task, "--max-iters", "1", "--out"])
            .arg(std::env::temp_dir().join(format!("wgpt-bad-task-{}", std::process::id())))
            .output()
            .expect("run wgpt");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{task}: {err}");
        assert!(err.contains(says) && !err.contains("panicked"), "{task}: {err}");
    }
}

#[test]
fn answer_only_batches_count_the_answers_and_start_at_lines() {
    use wgpt::data::{Dataset, Split};
    use wgpt::kernels::IGNORE;
    let task = Task::parse("addition").unwrap();
    let examples = task.train_examples(2000, 3);
    let text = task.corpus(2000, 3);
    let tok = wgpt::tokenizer::Tokenizer::char_level(&text).unwrap();
    let t = 24;
    let data = Dataset::from_examples(&examples, &tok, t).unwrap();
    let plain = Dataset::from_text(&text, &tok, t).unwrap();
    assert_eq!([data.train.clone(), data.val.clone()].concat(), [plain.train, plain.val].concat(), "the same tokens");
    let mut rng = wgpt::rng::Rng::new(9);
    for split in [Split::Train, Split::Val] {
        let (x, y) = data.batch(split, &mut rng, 16, t);
        for (row_x, row_y) in x.chunks(t).zip(y.chunks(t)) {
            // read independently from the window's text: the token after position j is an answer
            // token iff an '=' follows the last newline up to j (the newline ending a line counts)
            let chars: Vec<char> = tok.decode(row_x).unwrap().chars().collect();
            assert!(chars[0].is_ascii_digit(), "a window starts at a line: {chars:?}");
            for j in 0..t {
                let line = chars[..=j].split(|&c| c == '\n').next_back().unwrap();
                let answer = line.contains(&'=');
                assert_eq!(row_y[j] != IGNORE, answer, "target {j} of {chars:?}");
                if answer && j + 1 < t {
                    assert_eq!(row_y[j], row_x[j + 1], "a counted target is the next token");
                }
            }
        }
    }
}

#[test]
fn every_recipe_makes_a_run_whose_window_holds_its_lines_and_a_link() {
    use wgpt::run::link::Link;
    use wgpt::run::RunSettings;
    let manifest = wgpt::web::protocol::Manifest::new();
    let mut with = 0;
    for (spec, info) in TASKS.iter().zip(&manifest.tasks) {
        assert_eq!(spec.recipe.is_some(), info.recipe.is_some(), "{}: the page offers its recipe", spec.name);
        let Some(recipe) = &spec.recipe else { continue };
        with += 1;
        let s = RunSettings::recipe(spec).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert!(s.answer_loss && s.max_iters > recipe.reached, "{}: {s:?}", spec.name);
        let task = Task::parse(spec.name).unwrap();
        // a training window (block_size + 1 tokens from a line's start) holds every line whole
        let longest = task.train_examples(2000, 1).iter().map(|(p, a)| p.len() + a.len() + 1).max().unwrap();
        assert!(longest <= s.block_size + 1, "{}: lines of {longest} tokens, block {}", spec.name, s.block_size);
        let model = s.model(40).unwrap();
        s.run_config(model, wgpt::run::DataSource::Task(spec.name.into()), "char".into()).unwrap();
        let link = &info.recipe.as_ref().unwrap().link;
        let opened = Link::decode(link, &RunSettings::preset("gpt2").unwrap()).unwrap();
        assert!(opened.refused.is_empty() && opened.ignored.is_empty(), "{}: {opened:?}", spec.name);
        assert_eq!(opened.settings, s, "{}: the link opens the recipe", spec.name);
    }
    assert!(with == TASKS.len(), "{with} of {} tasks have a recipe", TASKS.len());
}
