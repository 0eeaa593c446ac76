//! glibc `getopt_long` as Slurm's commands use it: short options that cluster (`-hl`) and take
//! their value attached or as the next word (`-j1`, `-o FMT`), long options with `=` or a
//! separate value, unique prefixes of long names (`--form`), `--` ending the options, and
//! non-option words collected in order (glibc permutes them). Errors are glibc's texts, which
//! Slurm prints unchanged, followed by Slurm's `Try "<cmd> --help"` line.

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    No,
    Required,
    /// Only attached: `-j1`, `--jobs=1`.
    Optional,
}

/// One option: its short letter (if any), its long name (if any), and an id the caller matches.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    pub short: Option<char>,
    pub long: &'static str,
    pub arg: Arg,
    pub id: &'static str,
}

pub const fn opt(short: char, long: &'static str, arg: Arg, id: &'static str) -> Opt {
    Opt {
        short: Some(short),
        long,
        arg,
        id,
    }
}

pub const fn long(long: &'static str, arg: Arg, id: &'static str) -> Opt {
    Opt {
        short: None,
        long,
        arg,
        id,
    }
}

/// The parsed command line: options in order (id, value) and the other words.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub opts: Vec<(&'static str, Option<String>)>,
    pub words: Vec<String>,
}

impl Parsed {
    pub fn has(&self, id: &str) -> bool {
        self.opts.iter().any(|(i, _)| *i == id)
    }

    /// The last value given for `id`.
    pub fn last(&self, id: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Every value given for `id`, in order.
    pub fn all(&self, id: &str) -> Vec<&str> {
        self.opts
            .iter()
            .filter(|(i, _)| *i == id)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }
}

fn try_help(cmd: &str) -> String {
    format!("Try \"{cmd} --help\" for more information\n")
}

/// Parses `args` (without argv[0]). The error is the complete stderr text.
pub fn parse(cmd: &str, args: &[String], table: &[Opt]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            parsed.words.extend(args[i + 1..].iter().cloned());
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let o = find_long(cmd, name, a, table)?;
            let value = match (o.arg, inline) {
                (Arg::No, Some(_)) => {
                    return Err(format!(
                        "{cmd}: option '--{}' doesn't allow an argument\n{}",
                        o.long,
                        try_help(cmd)
                    ))
                }
                (Arg::No, None) => None,
                (Arg::Optional, v) => v,
                (Arg::Required, Some(v)) => Some(v),
                (Arg::Required, None) => {
                    i += 1;
                    match args.get(i) {
                        Some(v) => Some(v.clone()),
                        None => {
                            return Err(format!(
                                "{cmd}: option '--{}' requires an argument\n{}",
                                o.long,
                                try_help(cmd)
                            ))
                        }
                    }
                }
            };
            parsed.opts.push((o.id, value));
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a.chars().skip(1).collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                let Some(o) = table.iter().find(|o| o.short == Some(c)) else {
                    return Err(format!("{cmd}: invalid option -- '{c}'\n{}", try_help(cmd)));
                };
                let rest: String = chars[k + 1..].iter().collect();
                match o.arg {
                    Arg::No => {
                        parsed.opts.push((o.id, None));
                        k += 1;
                    }
                    Arg::Optional => {
                        parsed.opts.push((o.id, (!rest.is_empty()).then_some(rest)));
                        break;
                    }
                    Arg::Required => {
                        let value = if !rest.is_empty() {
                            rest
                        } else {
                            i += 1;
                            match args.get(i) {
                                Some(v) => v.clone(),
                                None => {
                                    return Err(format!(
                                        "{cmd}: option requires an argument -- '{c}'\n{}",
                                        try_help(cmd)
                                    ))
                                }
                            }
                        };
                        parsed.opts.push((o.id, Some(value)));
                        break;
                    }
                }
            }
        } else {
            parsed.words.push(a.clone());
        }
        i += 1;
    }
    Ok(parsed)
}

/// An exact long name, else the one long name `name` is a prefix of (glibc's abbreviations).
fn find_long<'t>(cmd: &str, name: &str, word: &str, table: &'t [Opt]) -> Result<&'t Opt, String> {
    if let Some(o) = table.iter().find(|o| o.long == name && !name.is_empty()) {
        return Ok(o);
    }
    let candidates: Vec<&Opt> = table
        .iter()
        .filter(|o| !o.long.is_empty() && !name.is_empty() && o.long.starts_with(name))
        .collect();
    let distinct = |c: &[&Opt]| {
        c.windows(2)
            .all(|w| w[0].id == w[1].id && w[0].arg == w[1].arg)
    };
    match candidates.as_slice() {
        [] => Err(format!(
            "{cmd}: unrecognized option '{}'\n{}",
            word.split('=').next().unwrap_or(word),
            try_help(cmd)
        )),
        [o] => Ok(o),
        many if distinct(many) => Ok(many[0]),
        many => Err(format!(
            "{cmd}: option '--{name}' is ambiguous; possibilities:{}\n{}",
            many.iter()
                .map(|o| format!(" '--{}'", o.long))
                .collect::<String>(),
            try_help(cmd)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Opt] = &[
        opt('h', "noheader", Arg::No, "h"),
        opt('l', "long", Arg::No, "l"),
        opt('j', "jobs", Arg::Optional, "j"),
        opt('o', "format", Arg::Required, "o"),
        opt('O', "Format", Arg::Required, "O"),
        long("start", Arg::No, "start"),
        long("steps", Arg::No, "steps"),
        long("me", Arg::No, "me"),
    ];

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn clusters_values_and_words() {
        let p = parse(
            "squeue",
            &words(&["-hl", "-j1,2", "x", "-o%i", "--format", "%j"]),
            TABLE,
        )
        .unwrap();
        assert_eq!(
            p.opts,
            vec![
                ("h", None),
                ("l", None),
                ("j", Some("1,2".to_string())),
                ("o", Some("%i".to_string())),
                ("o", Some("%j".to_string())),
            ]
        );
        assert_eq!(p.words, vec!["x".to_string()]);
        assert_eq!(p.last("o"), Some("%j"));
        // -j's value must be attached; a separate word stays a word.
        let p = parse("squeue", &words(&["-j", "7", "--", "-h"]), TABLE).unwrap();
        assert_eq!(p.opts, vec![("j", None)]);
        assert_eq!(p.words, words(&["7", "-h"]));
    }

    #[test]
    fn long_prefixes_and_glibc_errors() {
        let p = parse("squeue", &words(&["--form=%i", "--no", "--sta"]), TABLE).unwrap();
        assert_eq!(
            p.opts,
            vec![("o", Some("%i".to_string())), ("h", None), ("start", None)]
        );
        let e = |a: &[&str]| parse("squeue", &words(a), TABLE).unwrap_err();
        // Texts captured from Slurm 22.05.8 (glibc getopt_long).
        assert_eq!(
            e(&["--bogus"]),
            "squeue: unrecognized option '--bogus'\nTry \"squeue --help\" for more information\n"
        );
        assert_eq!(
            e(&["-z"]),
            "squeue: invalid option -- 'z'\nTry \"squeue --help\" for more information\n"
        );
        assert_eq!(
            e(&["-o"]),
            "squeue: option requires an argument -- 'o'\nTry \"squeue --help\" for more information\n"
        );
        assert_eq!(
            e(&["--format"]),
            "squeue: option '--format' requires an argument\nTry \"squeue --help\" for more information\n"
        );
        assert_eq!(
            e(&["--long=x"]),
            "squeue: option '--long' doesn't allow an argument\nTry \"squeue --help\" for more information\n"
        );
        assert!(e(&["--st"]).starts_with(
            "squeue: option '--st' is ambiguous; possibilities: '--start' '--steps'\n"
        ));
        assert!(e(&["--bogus=1"]).starts_with("squeue: unrecognized option '--bogus'\n"));
    }
}
