//! Table-driven tests for the line command parser: every command, and every
//! error a user can make.

use super::*;

fn u(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn g(name: &str) -> GroupName {
    GroupName::parse(name).unwrap()
}

fn key(text: &str) -> Passphrase {
    Passphrase::new(text).unwrap()
}

/// `Command` holds passphrases, which have no `PartialEq` (and a redacted
/// `Debug`), so commands are compared by their `Debug` text; the passphrase
/// itself is checked in `passphrases_are_parsed`.
fn assert_parses(line: &str, expected: Command) {
    match parse(line) {
        Ok(command) => assert_eq!(format!("{command:?}"), format!("{expected:?}"), "{line:?}"),
        Err(e) => panic!("{line:?} failed: {e}"),
    }
}

#[test]
fn valid_commands() {
    let cases: Vec<(&str, Command)> = vec![
        ("hello world", Command::Lobby("hello world".into())),
        // Leading blanks are ignored.
        ("  indented text", Command::Lobby("indented text".into())),
        ("hello\r\n", Command::Lobby("hello".into())),
        (
            "email me at a@b.c",
            Command::Lobby("email me at a@b.c".into()),
        ),
        ("@@everyone look", Command::Lobby("@everyone look".into())),
        ("@@", Command::Lobby("@".into())),
        ("@names", Command::Names),
        ("@NAMES", Command::Names),
        ("@names  ", Command::Names),
        (
            "@bob hi there",
            Command::Private {
                to: u("bob"),
                text: "hi there".into(),
            },
        ),
        (
            "@Bob  hi  there ",
            Command::Private {
                to: u("bob"),
                text: "hi  there".into(),
            },
        ),
        ("@status", Command::ShowStatus),
        ("@status normal", Command::SetStatus(Status::Normal)),
        ("@status dnd", Command::SetStatus(Status::Dnd)),
        ("@status AWAY", Command::SetStatus(Status::Away)),
        (
            "@secret bob k3y meet at noon",
            Command::Secret {
                to: u("bob"),
                key: key("k3y"),
                text: "meet at noon".into(),
            },
        ),
        (
            "@open 3 k3y",
            Command::Open {
                id: 3,
                key: key("k3y"),
            },
        ),
        (
            "@open #3 k3y",
            Command::Open {
                id: 3,
                key: key("k3y"),
            },
        ),
        (
            "@file bob ./notes.txt",
            Command::File {
                to: u("bob"),
                path: "./notes.txt".into(),
            },
        ),
        (
            "@file bob my documents/a b.txt",
            Command::File {
                to: u("bob"),
                path: "my documents/a b.txt".into(),
            },
        ),
        (
            "@group set team alice,bob",
            Command::GroupSet {
                group: g("team"),
                members: vec![u("alice"), u("bob")],
            },
        ),
        (
            "@group set team alice, bob,  carol",
            Command::GroupSet {
                group: g("team"),
                members: vec![u("alice"), u("bob"), u("carol")],
            },
        ),
        (
            "@group send team hello all",
            Command::GroupSend {
                group: g("team"),
                text: "hello all".into(),
            },
        ),
        (
            "@group file team report.pdf",
            Command::GroupFile {
                group: g("team"),
                path: "report.pdf".into(),
            },
        ),
        (
            "@group add team dave",
            Command::GroupAdd {
                group: g("team"),
                members: vec![u("dave")],
            },
        ),
        (
            "@group kick team dave,erin",
            Command::GroupKick {
                group: g("team"),
                members: vec![u("dave"), u("erin")],
            },
        ),
        (
            "@group leave team",
            Command::GroupLeave { group: g("team") },
        ),
        (
            "@group delete team",
            Command::GroupDelete { group: g("team") },
        ),
        ("@group list", Command::GroupList),
        ("@GROUP LIST", Command::GroupList),
        ("@history", Command::History(20)),
        ("@history 5", Command::History(5)),
        ("@history 1", Command::History(1)),
        ("@history 1000", Command::History(1000)),
        ("@help", Command::Help),
        ("@quit", Command::Quit),
    ];
    for (line, expected) in cases {
        assert_parses(line, expected);
    }
}

#[test]
fn errors() {
    use CommandError::*;
    let name_err = |what, input: &str, error| InvalidName {
        what,
        input: input.into(),
        error,
    };
    let cases: Vec<(&str, CommandError)> = vec![
        ("", EmptyMessage),
        ("   ", EmptyMessage),
        ("@", UnknownCommand(String::new())),
        ("@me hello", UnknownCommand("me".into())),
        ("@admin hi", UnknownCommand("admin".into())),
        ("@-x hi", UnknownCommand("-x".into())),
        ("@bob", NoMessageFor("bob".into())),
        ("@bob   ", NoMessageFor("bob".into())),
        ("@frobnicate", NoMessageFor("frobnicate".into())),
        ("@names now", Usage("@names")),
        ("@status busy", BadStatus("busy".into())),
        ("@status dnd now", Usage("@status [normal|dnd|away]")),
        ("@secret", Usage("@secret USER KEY message")),
        ("@secret bob", Usage("@secret USER KEY message")),
        ("@secret bob key", EmptyMessage),
        (
            "@secret b@d key hi",
            name_err("username", "b@d", NameError::Charset),
        ),
        ("@open", Usage("@open ID KEY")),
        ("@open 3", Usage("@open ID KEY")),
        ("@open x key", BadId("x".into())),
        ("@open -1 key", BadId("-1".into())),
        ("@open 3 key extra", Usage("@open ID KEY")),
        ("@file", Usage("@file USER PATH")),
        ("@file bob", Usage("@file USER PATH")),
        (
            "@file bob!! x",
            name_err("username", "bob!!", NameError::Charset),
        ),
        (
            "@group",
            Usage("@group set|send|file|add|accept|decline|kick|leave|delete|list ..."),
        ),
        (
            "@group frobnicate x",
            Usage("@group set|send|file|add|accept|decline|kick|leave|delete|list ..."),
        ),
        ("@group set", Usage("@group set NAME user1,user2")),
        ("@group set team", Usage("@group set NAME user1,user2")),
        ("@group set team , ,", Usage("@group set NAME user1,user2")),
        (
            "@group set t!m bob",
            name_err("group name", "t!m", NameError::Charset),
        ),
        (
            "@group set team bob,al!ce",
            name_err("username", "al!ce", NameError::Charset),
        ),
        (
            "@group set team bob,me",
            name_err("username", "me", NameError::Reserved("me".into())),
        ),
        ("@group send", Usage("@group send NAME message")),
        ("@group send team", EmptyMessage),
        ("@group file team", Usage("@group file NAME PATH")),
        ("@group add team", Usage("@group add NAME user1,user2")),
        ("@group kick", Usage("@group kick NAME user1,user2")),
        ("@group kick team", Usage("@group kick NAME user1,user2")),
        ("@group leave", Usage("@group leave NAME")),
        ("@group leave team now", Usage("@group leave NAME")),
        ("@group delete", Usage("@group delete NAME")),
        ("@group delete a b", Usage("@group delete NAME")),
        ("@group list all", Usage("@group list")),
        ("@history ten", BadCount("ten".into())),
        ("@history 0", BadCount("0".into())),
        ("@history 1001", BadCount("1001".into())),
        ("@history -5", BadCount("-5".into())),
        ("@history 5 6", Usage("@history [N]")),
        ("@help me", Usage("@help")),
        ("@quit now", Usage("@quit")),
    ];
    for (line, expected) in cases {
        match parse(line) {
            Ok(command) => panic!("{line:?} parsed as {command:?}, expected {expected:?}"),
            Err(e) => assert_eq!(e, expected, "{line:?}"),
        }
    }
}

#[test]
fn error_messages_are_one_line_explanations() {
    let cases = [
        ("@x1! hi", "unknown command @x1!; type @help"),
        (
            "@bob",
            "nothing to send: '@bob' is not a command; to message bob write @bob message, or type @help",
        ),
        (
            "@status busy",
            "unknown status 'busy'; use normal, dnd or away",
        ),
        ("@open 1", "usage: @open ID KEY"),
        (
            "@history 0",
            "'0' is not a valid count; usage: @history N (N from 1 to 1000, default 20)",
        ),
        (
            "@group set team x y!",
            "invalid username 'y!': may only contain letters a-z, digits, '_', '-' and '.'",
        ),
    ];
    for (line, message) in cases {
        let err = parse(line).unwrap_err();
        assert_eq!(err.to_string(), message, "{line:?}");
        assert!(!err.to_string().contains('\n'));
    }
}

#[test]
fn passphrases_are_parsed() {
    // Seal with the parsed key and open with the expected one: proves the
    // right word became the passphrase without exposing it.
    let Command::Secret {
        key: passphrase,
        text,
        ..
    } = parse("@secret bob s3cret a b c").unwrap()
    else {
        panic!("not a secret");
    };
    assert_eq!(text, "a b c");
    let sealed = sotto_crypto::seal(&passphrase, b"x");
    assert!(sotto_crypto::open(&key("s3cret"), &sealed).is_ok());
    let Command::Open {
        key: passphrase, ..
    } = parse("@open 1 s3cret").unwrap()
    else {
        panic!("not open");
    };
    assert!(sotto_crypto::open(&passphrase, &sealed).is_ok());
}

#[test]
fn help_lists_every_command() {
    for command in [
        "@@",
        "@USER",
        "@names",
        "@status",
        "@secret",
        "@open",
        "@file",
        "@group set",
        "@group send",
        "@group file",
        "@group add",
        "@group kick",
        "@group leave",
        "@group delete",
        "@group list",
        "@group accept",
        "@group decline",
        "@files",
        "@accept",
        "@reject",
        "@auto",
        "@password",
        "@history",
        "@devices",
        "@verify",
        "@help",
        "@quit",
    ] {
        assert!(HELP.contains(command), "{command} missing from HELP");
    }
}

#[test]
fn verify_and_devices() {
    assert!(matches!(
        parse("@verify bob"),
        Ok(Command::Verify { user, action: Verify::Show }) if user.as_str() == "bob"
    ));
    assert!(matches!(
        parse("@verify Bob CONFIRM 12345 67890"),
        Ok(Command::Verify { user, action: Verify::Confirm(n) }) if user.as_str() == "bob" && n == "12345 67890"
    ));
    // Confirming needs the number that was compared.
    assert!(matches!(
        parse("@verify bob confirm"),
        Err(CommandError::Usage(u)) if u.contains("NUMBER")
    ));
    assert!(matches!(
        parse("@verify bob reset"),
        Ok(Command::Verify {
            action: Verify::Reset,
            ..
        })
    ));
    assert!(matches!(
        parse("@verify bob maybe"),
        Err(CommandError::Usage("@verify USER [confirm NUMBER | reset]"))
    ));
    assert!(matches!(
        parse("@verify"),
        Err(CommandError::Usage("@verify USER [confirm NUMBER | reset]"))
    ));
    assert!(matches!(parse("@devices"), Ok(Command::Devices(None))));
    assert!(matches!(
        parse("@devices bob"),
        Ok(Command::Devices(Some(user))) if user.as_str() == "bob"
    ));
    assert!(matches!(
        parse("@devices remove Phone-1234"),
        Ok(Command::RemoveDevice(id)) if id.as_str() == "Phone-1234"
    ));
    assert!(matches!(
        parse("@devices trust Phone-1234"),
        Ok(Command::TrustDevice { user: None, device }) if device.as_str() == "Phone-1234"
    ));
    assert!(matches!(
        parse("@devices bob trust Phone-1234"),
        Ok(Command::TrustDevice { user: Some(user), device }) if user.as_str() == "bob" && device.as_str() == "Phone-1234"
    ));
    assert!(matches!(
        parse("@devices remove no"),
        Err(CommandError::BadDevice(id)) if id == "no"
    ));
    assert!(matches!(
        parse("@devices bob carol"),
        Err(CommandError::Usage(u)) if u.starts_with("@devices [USER]")
    ));
}

#[test]
fn a_line_starting_with_blanks_or_controls_before_at_is_still_a_command() {
    for line in [" @bob hi", "\t@bob hi", "\u{c}@bob hi", " \u{c} \t@bob hi"] {
        assert!(
            matches!(parse(line), Ok(Command::Private { ref to, ref text }) if to.as_str() == "bob" && text == "hi"),
            "{line:?}"
        );
    }
    // An invalid command after blanks is refused, not sent to the lobby.
    assert!(matches!(
        parse("  @!nope now"),
        Err(CommandError::UnknownCommand(_))
    ));
    assert!(matches!(parse("\u{c}hello"), Ok(Command::Lobby(t)) if t == "hello"));
    assert!(matches!(parse("  @@at sign"), Ok(Command::Lobby(t)) if t == "@at sign"));
}

#[test]
fn paths_are_taken_as_typed_with_quotes_and_home() {
    assert_parses(
        "@file bob \"my report.txt\"",
        Command::File {
            to: u("bob"),
            path: "my report.txt".into(),
        },
    );
    assert_parses(
        "@group file crew 'two words.pdf'",
        Command::GroupFile {
            group: g("crew"),
            path: "two words.pdf".into(),
        },
    );
    assert_parses(
        "@file bob plain name.txt",
        Command::File {
            to: u("bob"),
            path: "plain name.txt".into(),
        },
    );
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let home = std::path::PathBuf::from(home);
        assert_parses(
            "@file bob ~/notes/x.txt",
            Command::File {
                to: u("bob"),
                path: home.join("notes/x.txt"),
            },
        );
        assert_parses(
            "@file bob \"~/a b.txt\"",
            Command::File {
                to: u("bob"),
                path: home.join("a b.txt"),
            },
        );
    }
    // `~user` is not expanded.
    assert_parses(
        "@file bob ~alice/x",
        Command::File {
            to: u("bob"),
            path: "~alice/x".into(),
        },
    );
    assert_eq!(
        parse("@file bob \"\"").unwrap_err(),
        CommandError::Usage(USAGE_FILE)
    );
}

#[test]
fn devices_remove_or_trust_without_an_id_explains_the_usage() {
    for line in ["@devices remove", "@devices trust", "@devices REMOVE"] {
        assert_eq!(
            parse(line).unwrap_err(),
            CommandError::Usage(USAGE_DEVICES),
            "{line}"
        );
    }
}

#[test]
fn a_mistyped_command_gets_a_suggestion() {
    assert_eq!(suggest("histroy"), Some("history"));
    assert_eq!(suggest("HISTORY"), None, "not a typo");
    assert_eq!(suggest("nmaes"), Some("names"));
    assert_eq!(suggest("grup"), Some("group"));
    assert_eq!(suggest("stauts"), Some("status"));
    assert_eq!(suggest("bob"), None);
    assert_eq!(suggest("al"), None);
    let e = parse("@histroy").unwrap_err().to_string();
    assert!(e.contains("did you mean @history?"), "{e}");
    let e = parse("@-hlep").unwrap_err().to_string();
    assert!(!e.contains("did you mean"), "{e}");
    let e = parse("@qiut").unwrap_err().to_string();
    assert!(e.contains("did you mean @quit?"), "{e}");
}
