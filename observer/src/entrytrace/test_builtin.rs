//! `[`, `test` and `[[` evaluated on known arguments: the result, or none when it depends on
//! what is only known once the container runs (a file, an unknown value, `=~`), and then the
//! interpreter explores both outcomes.

use super::patterns::{glob_match, has_glob};
use super::state::Field;

/// `[`, `test` and `[[` on known arguments: `Some(result)`, or `None` when it depends on
/// something not known before the container runs (a file, an unknown value, `=~`).
pub(super) fn test_command(args: &[Field], double: bool) -> Option<bool> {
    // An unknown unquoted expansion may be any number of arguments.
    if args.iter().any(|a| a.value.is_none() && a.split) {
        return None;
    }
    let values: Vec<Option<&str>> = args.iter().map(|a| a.value.as_deref()).collect();
    let mut expr = TestExpr {
        args: &values,
        pos: 0,
        double,
    };
    let result = expr.or().ok()?;
    (expr.pos == values.len()).then_some(result)?
}

struct TestExpr<'a> {
    args: &'a [Option<&'a str>],
    pos: usize,
    double: bool,
}

/// A malformed test expression.
struct Malformed;

impl<'a> TestExpr<'a> {
    fn at(&self, i: usize) -> Option<&'a str> {
        self.args.get(self.pos + i).copied().flatten()
    }

    fn or(&mut self) -> Result<Option<bool>, Malformed> {
        let op = if self.double { "||" } else { "-o" };
        let mut value = self.and()?;
        while self.at(0) == Some(op) {
            self.pos += 1;
            let right = self.and()?;
            value = match (value, right) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            };
        }
        Ok(value)
    }

    fn and(&mut self) -> Result<Option<bool>, Malformed> {
        let op = if self.double { "&&" } else { "-a" };
        let mut value = self.not()?;
        while self.at(0) == Some(op) {
            self.pos += 1;
            let right = self.not()?;
            value = match (value, right) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
        }
        Ok(value)
    }

    fn not(&mut self) -> Result<Option<bool>, Malformed> {
        if self.at(0) == Some("!") && self.pos + 1 < self.args.len() {
            self.pos += 1;
            return Ok(self.not()?.map(|b| !b));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Option<bool>, Malformed> {
        let left = self.args.len() - self.pos;
        if left == 0 {
            return Err(Malformed);
        }
        if self.at(0) == Some("(") && left > 1 {
            self.pos += 1;
            let value = self.or()?;
            if self.at(0) != Some(")") {
                return Err(Malformed);
            }
            self.pos += 1;
            return Ok(value);
        }
        if left >= 3 {
            if let Some(op) = self.at(1).filter(|op| is_binary_test(op)) {
                let (a, b) = (self.args[self.pos], self.args[self.pos + 2]);
                self.pos += 3;
                return Ok(binary_test(a, op, b, self.double));
            }
        }
        if left >= 2 {
            if let Some(op) = self.at(0).filter(|op| is_unary_test(op)) {
                let arg = self.args[self.pos + 1];
                self.pos += 2;
                return Ok(match op {
                    "-n" => arg.map(|a| !a.is_empty()),
                    "-z" => arg.map(str::is_empty),
                    // Files, terminals, options: what the running container has.
                    _ => None,
                });
            }
        }
        let arg = self.args[self.pos];
        self.pos += 1;
        Ok(arg.map(|a| !a.is_empty()))
    }
}

fn is_unary_test(op: &str) -> bool {
    op.len() == 2 && op.starts_with('-') && "abcdefghknoprstuvwxzGLNOS".contains(&op[1..])
}

fn is_binary_test(op: &str) -> bool {
    matches!(
        op,
        "=" | "=="
            | "!="
            | "<"
            | ">"
            | "=~"
            | "-eq"
            | "-ne"
            | "-lt"
            | "-le"
            | "-gt"
            | "-ge"
            | "-nt"
            | "-ot"
            | "-ef"
    )
}

fn binary_test(a: Option<&str>, op: &str, b: Option<&str>, double: bool) -> Option<bool> {
    let (a, b) = (a?, b?);
    let equal = || {
        if double && has_glob(b) {
            glob_match(b, a)
        } else {
            a == b
        }
    };
    let int = |s: &str| s.trim().parse::<i64>().ok();
    match op {
        "=" | "==" => Some(equal()),
        "!=" => Some(!equal()),
        "<" => Some(a < b),
        ">" => Some(a > b),
        "-eq" => Some(int(a)? == int(b)?),
        "-ne" => Some(int(a)? != int(b)?),
        "-lt" => Some(int(a)? < int(b)?),
        "-le" => Some(int(a)? <= int(b)?),
        "-gt" => Some(int(a)? > int(b)?),
        "-ge" => Some(int(a)? >= int(b)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_builtin() {
        let t = |args: &[&str], double| {
            let fields: Vec<Field> = args.iter().map(|a| Field::known(*a)).collect();
            test_command(&fields, double)
        };
        assert_eq!(t(&["a", "=", "a"], false), Some(true));
        assert_eq!(t(&["a", "!=", "a"], false), Some(false));
        assert_eq!(t(&["-z", ""], false), Some(true));
        assert_eq!(t(&["-n", ""], false), Some(false));
        assert_eq!(t(&["x"], false), Some(true));
        assert_eq!(t(&["!", "x"], false), Some(false));
        assert_eq!(t(&["-f", "/x"], false), None);
        assert_eq!(
            t(&["a", "=", "b", "-o", "1", "-lt", "2"], false),
            Some(true)
        );
        assert_eq!(t(&["a", "=", "b", "-a", "-f", "/x"], false), Some(false));
        assert_eq!(t(&["a", "=", "a", "-a", "-f", "/x"], false), None);
        assert_eq!(t(&["-a", "=", "-a"], false), Some(true));
        assert_eq!(t(&["--help", "==", "-*"], true), Some(true));
        assert_eq!(t(&["x", "=~", "y"], true), None);
        let unknown = Field {
            value: None,
            text: "$X".into(),
            split: false,
        };
        assert_eq!(test_command(std::slice::from_ref(&unknown), false), None);
        assert_eq!(
            test_command(&[Field::known("a"), Field::known("="), unknown], false),
            None
        );
    }
}
