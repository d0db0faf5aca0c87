//! Bucket policies (Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus): IAM's JSON policy
//! language as S3 reads a bucket's, checked whole when it is put and evaluated by the gateway
//! for every S3 request to the bucket.
//!
//! What a statement can name is refused when it is put unless it is understood here (an
//! operator, a policy variable), so that no Deny is ever silently dropped; a condition key this
//! gateway does not know is absent from every request, as IAM treats a key a request lacks.

use std::net::IpAddr;

use serde_json::Value;

use crate::error::S3Error;

/// Largest policy document (S3's 20 KB).
pub const POLICY_BYTES_MAX: usize = 20 * 1024;

fn malformed(message: impl Into<String>) -> S3Error {
    S3Error::new("MalformedPolicy", 400, message)
}

/// Who a statement names: anyone (`*`, anonymous callers too) or these principals.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Anyone,
    Named(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    Bool,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Null,
}

const OPS: [(&str, Op); 20] = [
    ("StringEquals", Op::StringEquals),
    ("StringNotEquals", Op::StringNotEquals),
    ("StringEqualsIgnoreCase", Op::StringEqualsIgnoreCase),
    ("StringNotEqualsIgnoreCase", Op::StringNotEqualsIgnoreCase),
    ("StringLike", Op::StringLike),
    ("StringNotLike", Op::StringNotLike),
    ("NumericEquals", Op::NumericEquals),
    ("NumericNotEquals", Op::NumericNotEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("Bool", Op::Bool),
    ("IpAddress", Op::IpAddress),
    ("NotIpAddress", Op::NotIpAddress),
    ("ArnEquals", Op::ArnEquals),
    ("ArnNotEquals", Op::ArnNotEquals),
    ("ArnLike", Op::ArnLike),
    ("ArnNotLike", Op::ArnNotLike),
    ("Null", Op::Null),
];

impl Op {
    /// The operator a negated one negates (a negated operator holds where its base holds for
    /// none of the policy's values).
    fn base(self) -> (Op, bool) {
        match self {
            Op::StringNotEquals => (Op::StringEquals, true),
            Op::StringNotEqualsIgnoreCase => (Op::StringEqualsIgnoreCase, true),
            Op::StringNotLike => (Op::StringLike, true),
            Op::NumericNotEquals => (Op::NumericEquals, true),
            Op::NotIpAddress => (Op::IpAddress, true),
            Op::ArnNotEquals => (Op::ArnEquals, true),
            Op::ArnNotLike => (Op::ArnLike, true),
            op => (op, false),
        }
    }
}

/// How a condition reads a key with several values (`ForAnyValue:` / `ForAllValues:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    One,
    AnyValue,
    AllValues,
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    op: Op,
    set: Set,
    if_exists: bool,
    /// Lower case: condition keys are matched without case.
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub deny: bool,
    /// `NotPrincipal` where the bool is set.
    principal: (Who, bool),
    actions: (Vec<String>, bool),
    resources: (Vec<String>, bool),
    conditions: Vec<Condition>,
}

/// A bucket's policy: its statements, and the document as it was put (GetBucketPolicy's).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// What a policy says of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A statement denies it (its Sid, if it has one): refused, whatever else allows it.
    Deny(Option<String>),
    /// A statement allows it, none denies it.
    Allow,
    /// No statement applies: the ACLs decide.
    Neither,
}

/// One string or a list of them (IAM's every list field); numbers and booleans as text.
fn strings(v: &Value, what: &str) -> Result<Vec<String>, S3Error> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(malformed(format!("{what}: a string or a list of strings"))),
    };
    match v {
        Value::Array(a) if a.is_empty() => Err(malformed(format!("{what}: an empty list"))),
        Value::Array(a) => a.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

/// A principal's name in a policy: an IAM user ARN's name, an account ARN's or a plain
/// account (both name a principal here: a principal is its own account), a canonical user id.
fn principal_name(s: &str) -> Result<String, S3Error> {
    let name = if let Some(rest) = s.strip_prefix("arn:aws:iam::") {
        let (account, resource) = rest.split_once(':').ok_or_else(|| malformed(format!("Invalid principal in policy: {s:?}")))?;
        if resource == "root" {
            account
        } else {
            resource.strip_prefix("user/").map(|p| p.rsplit('/').next().unwrap_or(p)).ok_or_else(|| malformed(format!("Invalid principal in policy: {s:?} (a user or an account)")))?
        }
    } else {
        s
    };
    if name.is_empty() || name.contains('*') {
        return Err(malformed(format!("Invalid principal in policy: {s:?}")));
    }
    Ok(name.to_string())
}

fn who(v: &Value) -> Result<Who, S3Error> {
    match v {
        Value::String(s) if s == "*" => Ok(Who::Anyone),
        Value::Object(m) => {
            let mut names = Vec::new();
            for (kind, ids) in m {
                for id in strings(ids, "Principal")? {
                    match kind.as_str() {
                        "AWS" if id == "*" => return Ok(Who::Anyone),
                        "AWS" => names.push(principal_name(&id)?),
                        "CanonicalUser" => names.push(id),
                        // Services and federated identities are none of this store's principals.
                        "Service" | "Federated" => {}
                        other => return Err(malformed(format!("Invalid principal in policy: the kind {other:?}"))),
                    }
                }
            }
            Ok(Who::Named(names))
        }
        _ => Err(malformed("Invalid principal in policy: \"*\" or an object such as {\"AWS\": [...]}")),
    }
}

/// The policy variables a resource or a condition value may hold: `${aws:username}` (and
/// `${aws:userid}`, the same here), and the escapes `${*}`, `${?}`, `${$}`. Any other is
/// refused when the policy is put (IAM's others name keys this gateway has no value for).
fn check_variables(s: &str) -> Result<(), S3Error> {
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        let tail = &rest[at + 2..];
        let end = tail.find('}').ok_or_else(|| malformed(format!("an unterminated policy variable in {s:?}")))?;
        let name = tail[..end].to_ascii_lowercase();
        if !matches!(name.as_str(), "aws:username" | "aws:userid" | "*" | "?" | "$") {
            return Err(malformed(format!("the policy variable ${{{}}} is not supported (${{aws:username}} is)", &tail[..end])));
        }
        rest = &tail[end + 1..];
    }
    Ok(())
}

/// `s` with its policy variables replaced for `user` (None: anonymous, for whom
/// `${aws:username}` has no value and the pattern matches nothing). Escapes come out as the
/// literal characters, marked so that a pattern does not take them as wildcards.
fn substitute(s: &str, user: &str) -> Option<Vec<Piece>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        out.extend(rest[..at].chars().map(Piece::Pattern));
        let tail = &rest[at + 2..];
        let end = tail.find('}')?;
        match tail[..end].to_ascii_lowercase().as_str() {
            "aws:username" | "aws:userid" if !user.is_empty() => out.extend(user.chars().map(Piece::Literal)),
            "*" => out.push(Piece::Literal('*')),
            "?" => out.push(Piece::Literal('?')),
            "$" => out.push(Piece::Literal('$')),
            _ => return None,
        }
        rest = &tail[end + 1..];
    }
    out.extend(rest.chars().map(Piece::Pattern));
    Some(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// A character of the pattern: `*` and `?` are wildcards.
    Pattern(char),
    /// A character that stands for itself (from a variable or an escape).
    Literal(char),
}

/// Whether `value` matches `pattern` (`*`: any run, `?`: any one character), without regard to
/// ASCII case where `nocase`.
fn glob(pattern: &[Piece], value: &str, nocase: bool) -> bool {
    let v: Vec<char> = value.chars().collect();
    let eq = |a: char, b: char| if nocase { a.eq_ignore_ascii_case(&b) } else { a == b };
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < v.len() {
        match pattern.get(p) {
            Some(Piece::Pattern('*')) => {
                star = Some((p, i));
                p += 1;
            }
            Some(Piece::Pattern('?')) => {
                p += 1;
                i += 1;
            }
            Some(Piece::Pattern(c) | Piece::Literal(c)) if eq(*c, v[i]) => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == Piece::Pattern('*'))
}

fn plain(s: &str) -> Vec<Piece> {
    s.chars().map(Piece::Pattern).collect()
}

/// A CIDR block (`10.0.0.0/8`, `2001:db8::/32`) or one address.
fn cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
        None => {
            let ip = s.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    (bits <= if ip.is_ipv4() { 32 } else { 128 }).then_some((ip, bits))
}

fn in_cidr(ip: &str, block: &str) -> bool {
    let (Some((net, bits)), Ok(ip)) = (cidr(block), ip.parse::<IpAddr>()) else { return false };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

fn condition(op_name: &str, key: &str, values: &Value) -> Result<Condition, S3Error> {
    let (set, name) = match op_name.split_once(':') {
        Some(("ForAnyValue", n)) => (Set::AnyValue, n),
        Some(("ForAllValues", n)) => (Set::AllValues, n),
        Some(_) => return Err(malformed(format!("the condition operator {op_name:?} is not supported"))),
        None => (Set::One, op_name),
    };
    let (name, if_exists) = match name.strip_suffix("IfExists") {
        Some(n) => (n, true),
        None => (name, false),
    };
    let op = OPS.iter().find(|(n, _)| *n == name).map(|(_, o)| *o).ok_or_else(|| malformed(format!("the condition operator {op_name:?} is not supported")))?;
    if op == Op::Null && (if_exists || set != Set::One) {
        return Err(malformed(format!("{op_name}: Null takes neither IfExists nor a set qualifier")));
    }
    let values = strings(values, &format!("Condition {op_name} {key}"))?;
    for v in &values {
        let ok = match op {
            Op::NumericEquals | Op::NumericNotEquals | Op::NumericLessThan | Op::NumericLessThanEquals | Op::NumericGreaterThan | Op::NumericGreaterThanEquals => v.parse::<f64>().is_ok(),
            Op::Bool | Op::Null => matches!(v.to_ascii_lowercase().as_str(), "true" | "false"),
            Op::IpAddress | Op::NotIpAddress => cidr(v).is_some(),
            _ => true,
        };
        if !ok {
            return Err(malformed(format!("Condition {op_name} {key}: {v:?} is not a value it compares")));
        }
        check_variables(v)?;
    }
    if key.is_empty() {
        return Err(malformed(format!("Condition {op_name}: an empty key")));
    }
    Ok(Condition { op, set, if_exists, key: key.to_ascii_lowercase(), values })
}

/// Exactly one of `name` and `Not{name}`: its value, and whether it was the negated one.
fn one_of<'a>(st: &'a serde_json::Map<String, Value>, name: &str) -> Result<(&'a Value, bool), S3Error> {
    match (st.get(name), st.get(&format!("Not{name}"))) {
        (Some(v), None) => Ok((v, false)),
        (None, Some(v)) => Ok((v, true)),
        (Some(_), Some(_)) => Err(malformed(format!("a statement has both {name} and Not{name}"))),
        (None, None) => Err(malformed(format!("Missing required field {name}"))),
    }
}

/// The policy a PutBucketPolicy document sets on `bucket`, checked as S3 checks one: its
/// resources within the bucket, its actions S3's.
pub fn parse(doc: &[u8], bucket: &str) -> Result<Policy, S3Error> {
    if doc.len() > POLICY_BYTES_MAX {
        return Err(S3Error::new("PolicyTooLarge", 400, format!("a bucket policy is at most {POLICY_BYTES_MAX} bytes")));
    }
    let v: Value = serde_json::from_slice(doc).map_err(|e| malformed(format!("Policies must be valid JSON: {e}")))?;
    let Value::Object(top) = &v else { return Err(malformed("a policy is a JSON object")) };
    for k in top.keys() {
        if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
            return Err(malformed(format!("Unknown field {k}")));
        }
    }
    match top.get("Version").and_then(Value::as_str) {
        None | Some("2012-10-17" | "2008-10-17") => {}
        Some(other) => return Err(malformed(format!("the policy Version {other:?} is not 2012-10-17 nor 2008-10-17"))),
    }
    let list = match top.get("Statement") {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().collect::<Vec<_>>(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => return Err(malformed("Missing required field Statement")),
    };
    let mut statements = Vec::with_capacity(list.len());
    for s in list {
        let Value::Object(st) = s else { return Err(malformed("a statement is a JSON object")) };
        for k in st.keys() {
            if !matches!(k.as_str(), "Sid" | "Effect" | "Principal" | "NotPrincipal" | "Action" | "NotAction" | "Resource" | "NotResource" | "Condition") {
                return Err(malformed(format!("Unknown field {k}")));
            }
        }
        let deny = match st.get("Effect").and_then(Value::as_str) {
            Some("Allow") => false,
            Some("Deny") => true,
            _ => return Err(malformed("Invalid effect: a statement's Effect is Allow or Deny")),
        };
        let (p, not_principal) = one_of(st, "Principal")?;
        if not_principal && !deny {
            return Err(malformed("NotPrincipal is only supported with the Deny effect"));
        }
        let (a, not_action) = one_of(st, "Action")?;
        let actions = strings(a, "Action")?;
        for action in &actions {
            if action != "*" && !action.to_ascii_lowercase().starts_with("s3:") {
                return Err(malformed(format!("Policy has invalid action {action:?} (a bucket policy names S3's actions, s3:...)")));
            }
        }
        let (r, not_resource) = one_of(st, "Resource")?;
        let resources = strings(r, "Resource")?;
        for res in &resources {
            check_variables(res)?;
            let Some(path) = res.strip_prefix("arn:aws:s3:::") else { return Err(malformed(format!("Policy has invalid resource {res:?} (arn:aws:s3:::{bucket} or arn:aws:s3:::{bucket}/...)"))) };
            let named = path.split('/').next().unwrap_or(path);
            if !glob(&plain(named), bucket, false) {
                return Err(malformed(format!("Policy has invalid resource {res:?}: not in bucket {bucket}")));
            }
        }
        let mut conditions = Vec::new();
        match st.get("Condition") {
            None => {}
            Some(Value::Object(ops)) => {
                for (op, keys) in ops {
                    let Value::Object(keys) = keys else { return Err(malformed(format!("Condition {op}: an object of keys and values"))) };
                    for (key, values) in keys {
                        conditions.push(condition(op, key, values)?);
                    }
                }
            }
            Some(_) => return Err(malformed("a Condition is an object of operators")),
        }
        let sid = match st.get("Sid") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(malformed("a Sid is a string")),
        };
        statements.push(Statement { sid, deny, principal: (who(p)?, not_principal), actions: (actions, not_action), resources: (resources, not_resource), conditions });
    }
    Ok(Policy { statements })
}

/// The keys of a request's context: their values (lower-case key), None where it has none.
pub type Keys<'a> = &'a dyn Fn(&str) -> Option<Vec<String>>;

impl Condition {
    fn one(&self, op: Op, got: &str, want: &str, user: &str) -> bool {
        let num = |s: &str| s.parse::<f64>().ok();
        let pattern = || substitute(want, user);
        match op {
            Op::StringEquals => pattern().is_some_and(|p| p.iter().map(|c| match c { Piece::Pattern(c) | Piece::Literal(c) => *c }).eq(got.chars())),
            Op::StringEqualsIgnoreCase => pattern().is_some_and(|p| {
                let s: String = p.iter().map(|c| match c { Piece::Pattern(c) | Piece::Literal(c) => *c }).collect();
                s.eq_ignore_ascii_case(got)
            }),
            Op::StringLike | Op::ArnLike => pattern().is_some_and(|p| glob(&p, got, false)),
            Op::ArnEquals => want == got,
            Op::NumericEquals => num(got).zip(num(want)).is_some_and(|(a, b)| a == b),
            Op::NumericLessThan => num(got).zip(num(want)).is_some_and(|(a, b)| a < b),
            Op::NumericLessThanEquals => num(got).zip(num(want)).is_some_and(|(a, b)| a <= b),
            Op::NumericGreaterThan => num(got).zip(num(want)).is_some_and(|(a, b)| a > b),
            Op::NumericGreaterThanEquals => num(got).zip(num(want)).is_some_and(|(a, b)| a >= b),
            Op::Bool => got.eq_ignore_ascii_case(want),
            Op::IpAddress => in_cidr(got, want),
            _ => false,
        }
    }

    /// Whether one request value satisfies the condition (a negated operator: its base holds
    /// for none of the policy's values).
    fn value_holds(&self, got: &str, user: &str) -> bool {
        let (base, negated) = self.op.base();
        let any = self.values.iter().any(|w| self.one(base, got, w, user));
        any != negated
    }

    fn holds(&self, keys: Keys<'_>, user: &str) -> bool {
        let got = keys(&self.key);
        if self.op == Op::Null {
            let absent = got.as_ref().is_none_or(Vec::is_empty);
            return self.values.iter().any(|v| v.eq_ignore_ascii_case("true") == absent);
        }
        let got = match got {
            Some(g) if !g.is_empty() => g,
            // A key the request lacks: IfExists holds, ForAllValues holds (no value fails it),
            // anything else does not.
            _ => return self.if_exists || self.set == Set::AllValues,
        };
        match self.set {
            Set::One | Set::AnyValue => got.iter().any(|g| self.value_holds(g, user)),
            Set::AllValues => got.iter().all(|g| self.value_holds(g, user)),
        }
    }
}

impl Statement {
    fn principal_matches(&self, user: &str) -> bool {
        let named = match &self.principal.0 {
            Who::Anyone => true,
            Who::Named(names) => !user.is_empty() && names.iter().any(|n| n == user),
        };
        named != self.principal.1
    }

    fn action_matches(&self, action: &str) -> bool {
        let hit = self.actions.0.iter().any(|a| glob(&plain(a), action, true));
        hit != self.actions.1
    }

    fn resource_matches(&self, resource: &str, user: &str) -> bool {
        let hit = self.resources.0.iter().any(|r| substitute(r, user).is_some_and(|p| glob(&p, resource, false)));
        hit != self.resources.1
    }

    fn applies(&self, user: &str, action: &str, resource: &str, keys: Keys<'_>) -> bool {
        self.principal_matches(user) && self.action_matches(action) && self.resource_matches(resource, user) && self.conditions.iter().all(|c| c.holds(keys, user))
    }

    /// Whether the statement reads the key `prefix...` (lower case) in any condition.
    fn reads_key(&self, prefix: &str) -> bool {
        self.conditions.iter().any(|c| c.key.starts_with(prefix))
    }
}

impl Policy {
    /// What the policy says of `user` (empty: anonymous) doing `action` (`s3:GetObject`) on
    /// `resource` (`arn:aws:s3:::bucket/key`), with the request's condition keys.
    pub fn decide(&self, user: &str, action: &str, resource: &str, keys: Keys<'_>) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            if s.applies(user, action, resource, keys) {
                if s.deny {
                    return Decision::Deny(s.sid.clone());
                }
                allowed = true;
            }
        }
        if allowed { Decision::Allow } else { Decision::Neither }
    }

    /// Whether a statement reads a condition key that starts with `prefix` (lower case: an
    /// object's existing tags cost a read, made only for the policies that use them).
    pub fn reads_key(&self, prefix: &str) -> bool {
        self.statements.iter().any(|s| s.reads_key(prefix))
    }

    /// Whether the policy makes the bucket public (GetBucketPolicyStatus): it allows anyone,
    /// anonymous callers included, something without a condition that narrows who.
    pub fn is_public(&self) -> bool {
        self.statements.iter().any(|s| !s.deny && !s.principal.1 && s.principal.0 == Who::Anyone && s.conditions.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn none(_: &str) -> Option<Vec<String>> {
        None
    }

    fn policy(statements: &str) -> Policy {
        parse(format!("{{\"Version\": \"2012-10-17\", \"Statement\": [{statements}]}}").as_bytes(), "bkt").unwrap()
    }

    fn refused(doc: &str) -> String {
        let e = parse(doc.as_bytes(), "bkt").unwrap_err();
        assert_eq!(e.code, "MalformedPolicy", "{}", e.message);
        e.message
    }

    #[test]
    fn a_policy_is_checked_whole_when_it_is_put() {
        let st = |s: &str| format!("{{\"Statement\": [{s}]}}");
        refused("not json");
        refused("[]");
        refused(&st(""));
        refused(&st(r#"{"Effect": "Maybe", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bkt/*"}"#));
        refused(&st(r#"{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bkt/*"}"#));
        refused(&st(r#"{"Effect": "Allow", "Principal": "*", "Action": "iam:CreateUser", "Resource": "arn:aws:s3:::bkt/*"}"#));
        assert!(refused(&st(r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other/*"}"#)).contains("not in bucket"));
        refused(&st(r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}"#));
        // An operator or a variable not understood is refused, never dropped.
        assert!(refused(&st(r#"{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::bkt/*", "Condition": {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}}"#)).contains("DateLessThan"));
        refused(&st(r#"{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::bkt/${aws:PrincipalTag/x}/*"}"#));
        refused(&st(r#"{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::bkt/*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/99"}}}"#));
        refused(&st(r#"{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::bkt/*", "Extra": 1}"#));
        assert_eq!(parse(&vec![b' '; POLICY_BYTES_MAX + 1], "bkt").unwrap_err().code, "PolicyTooLarge");
        // A single statement object, and a wildcard bucket that covers this one, are fine.
        assert!(parse(st(r#"{"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::acct:user/bob", "carol"]}, "Action": ["s3:Get*"], "Resource": "arn:aws:s3:::b*/*"}"#).as_bytes(), "bkt").is_ok());
    }

    #[test]
    fn deny_wins_allow_grants_and_nothing_is_neither() {
        let p = policy(
            r#"{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bkt/public/*"},
               {"Sid": "nobob", "Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::bob:root"}, "Action": "s3:*", "Resource": ["arn:aws:s3:::bkt", "arn:aws:s3:::bkt/*"]}"#,
        );
        assert_eq!(p.decide("", "s3:GetObject", "arn:aws:s3:::bkt/public/a", &none), Decision::Allow);
        assert_eq!(p.decide("alice", "s3:getobject", "arn:aws:s3:::bkt/public/a", &none), Decision::Allow);
        assert_eq!(p.decide("alice", "s3:GetObject", "arn:aws:s3:::bkt/private/a", &none), Decision::Neither);
        assert_eq!(p.decide("alice", "s3:PutObject", "arn:aws:s3:::bkt/public/a", &none), Decision::Neither);
        assert_eq!(p.decide("bob", "s3:GetObject", "arn:aws:s3:::bkt/public/a", &none), Decision::Deny(Some("nobob".into())));
        assert_eq!(p.decide("bob", "s3:ListBucket", "arn:aws:s3:::bkt", &none), Decision::Deny(Some("nobob".into())));
        assert!(p.is_public());
    }

    #[test]
    fn conditions_read_the_requests_keys_as_iam_does() {
        let p = policy(
            r#"{"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::bkt/*", "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}},
               {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::bkt/*", "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}},
               {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::bkt", "Condition": {"StringLike": {"s3:prefix": ["home/${aws:username}/*", "shared/?"]}, "IpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1"]}}},
               {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::bkt/*", "Condition": {"Bool": {"aws:SecureTransport": false}}},
               {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bkt/*", "Condition": {"NumericGreaterThanEquals": {"s3:max-keys": 10}, "StringEqualsIfExists": {"s3:x-amz-acl": "public-read"}}}"#,
        );
        let keys = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| vec![v.to_string()]);
        let put = "s3:PutObject";
        let obj = "arn:aws:s3:::bkt/k";
        assert!(matches!(p.decide("a", put, obj, &keys(&[("aws:securetransport", "true")])), Decision::Deny(_)));
        assert!(matches!(p.decide("a", put, obj, &keys(&[("aws:securetransport", "true"), ("s3:x-amz-server-side-encryption", "aws:kms")])), Decision::Deny(_)));
        assert_eq!(p.decide("a", put, obj, &keys(&[("aws:securetransport", "true"), ("s3:x-amz-server-side-encryption", "AES256")])), Decision::Neither);
        assert!(matches!(p.decide("a", put, obj, &keys(&[("aws:securetransport", "false"), ("s3:x-amz-server-side-encryption", "AES256")])), Decision::Deny(_)));
        let list = |prefix: &'static str, ip: &'static str| move |k: &str| match k {
            "s3:prefix" => Some(vec![prefix.to_string()]),
            "aws:sourceip" => Some(vec![ip.to_string()]),
            _ => None,
        };
        assert_eq!(p.decide("carol", "s3:ListBucket", "arn:aws:s3:::bkt", &list("home/carol/x", "127.0.0.1")), Decision::Allow);
        assert_eq!(p.decide("carol", "s3:ListBucket", "arn:aws:s3:::bkt", &list("home/dave/x", "127.0.0.1")), Decision::Neither);
        assert_eq!(p.decide("", "s3:ListBucket", "arn:aws:s3:::bkt", &list("home//x", "127.0.0.1")), Decision::Neither, "anonymous has no username");
        assert_eq!(p.decide("carol", "s3:ListBucket", "arn:aws:s3:::bkt", &list("shared/x", "::1")), Decision::Allow);
        assert_eq!(p.decide("carol", "s3:ListBucket", "arn:aws:s3:::bkt", &list("shared/xy", "::1")), Decision::Neither);
        assert_eq!(p.decide("carol", "s3:ListBucket", "arn:aws:s3:::bkt", &list("home/carol/x", "10.0.0.1")), Decision::Neither);
        // IfExists: a missing key passes; every condition of a statement must hold.
        let get = "s3:GetObject";
        assert!(matches!(p.decide("a", get, obj, &keys(&[("aws:securetransport", "true"), ("s3:max-keys", "20")])), Decision::Deny(_)));
        assert_eq!(p.decide("a", get, obj, &keys(&[("aws:securetransport", "true"), ("s3:max-keys", "20"), ("s3:x-amz-acl", "private")])), Decision::Neither);
        assert_eq!(p.decide("a", get, obj, &keys(&[("aws:securetransport", "true"), ("s3:max-keys", "5")])), Decision::Neither);
    }

    #[test]
    fn not_fields_and_sets_invert_as_iam_says() {
        let p = policy(
            r#"{"Effect": "Deny", "NotPrincipal": {"AWS": "alice"}, "NotAction": ["s3:Get*", "s3:List*"], "Resource": "arn:aws:s3:::bkt/*"},
               {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "NotResource": "arn:aws:s3:::bkt/private/*", "Condition": {"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team", "cost"]}}}"#,
        );
        let obj = "arn:aws:s3:::bkt/k";
        assert!(matches!(p.decide("bob", "s3:DeleteObject", obj, &none), Decision::Deny(_)));
        assert_eq!(p.decide("bob", "s3:GetObject", obj, &none), Decision::Neither);
        let tags = |k: &[&str]| {
            let k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            move |n: &str| (n == "s3:requestobjecttagkeys").then(|| k.clone())
        };
        assert_eq!(p.decide("alice", "s3:PutObject", obj, &tags(&["team"])), Decision::Allow);
        assert_eq!(p.decide("alice", "s3:PutObject", obj, &tags(&["team", "other"])), Decision::Neither);
        assert_eq!(p.decide("alice", "s3:PutObject", obj, &none), Decision::Allow, "ForAllValues holds for a key the request lacks");
        assert_eq!(p.decide("alice", "s3:PutObject", "arn:aws:s3:::bkt/private/k", &tags(&["team"])), Decision::Neither);
        assert!(!p.is_public());
    }

    fn naive(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => (0..=v.len()).any(|i| naive(rest, &v[i..])),
            Some(('?', rest)) => !v.is_empty() && naive(rest, &v[1..]),
            Some((c, rest)) => v.first() == Some(c) && naive(rest, &v[1..]),
        }
    }

    proptest! {
        /// The matcher agrees with a plain recursive reading of `*` and `?`.
        #[test]
        fn glob_agrees_with_its_definition(p in "[ab*?]{0,8}", v in "[ab]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let vc: Vec<char> = v.chars().collect();
            prop_assert_eq!(glob(&plain(&p), &v, false), naive(&pc, &vc));
        }

        /// Whatever bytes are put as a policy, parsing answers (never panics), and a parsed
        /// policy decides any request without panicking.
        #[test]
        fn any_document_is_answered(doc in proptest::collection::vec(any::<u8>(), 0..200), action in "s3:[A-Za-z*]{0,10}") {
            if let Ok(p) = parse(&doc, "bkt") {
                let _ = p.decide("u", &action, "arn:aws:s3:::bkt/x", &none);
            }
        }
    }

    #[test]
    fn variables_and_their_escapes() {
        let p = policy(r#"{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bkt/${*}${aws:username}"}"#);
        assert_eq!(p.decide("eve", "s3:GetObject", "arn:aws:s3:::bkt/*eve", &none), Decision::Allow);
        assert_eq!(p.decide("eve", "s3:GetObject", "arn:aws:s3:::bkt/xeve", &none), Decision::Neither, "an escaped * is no wildcard");
    }
}
