use super::file::{Known, TenantsFileError, parse};
use super::*;

const TWO: &str = r#"
[[tenant]]
id = "acme"
keys = ["acme-web", "acme-batch"]
whatsapp = [{ phone_number_id = "111", token = "env:ACME_WA_TOKEN", max_mps = 40 }]
sms_senders = ["ACME", "+14155550100"]
fair_share = 3

[[tenant]]
id = "globex"
keys = ["globex"]
"#;

fn keys() -> Vec<String> {
    ["acme-web", "acme-batch", "globex"]
        .map(String::from)
        .to_vec()
}

fn tokens(name: &str) -> Option<String> {
    (name == "env:ACME_WA_TOKEN" || name == "secretsmanager:wa").then(|| "tok".to_owned())
}

fn load(text: &str) -> Result<Tenants, TenantsFileError> {
    let keys = keys();
    let known = Known {
        key_ids: Some(&keys),
        token: &tokens,
        secret_prefix: Some("herald/"),
        deployment: (Some("999"), Some("HERALD")),
    };
    Ok(Tenants::from_file(
        parse(text, &known)?,
        Some("999".into()),
        Some("HERALD".into()),
    ))
}

fn refusal(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

#[test]
fn a_two_tenant_file_is_read() {
    let t = load(TWO).unwrap();
    assert!(t.configured());
    assert_eq!(&*t.of_key("acme-batch"), "acme");
    assert_eq!(&*t.of_key("globex"), "globex");
    assert_eq!(t.share("acme"), 3);
    let (tenant, number) = t.numbers().next().unwrap();
    assert_eq!(&*tenant.id, "acme");
    assert_eq!(number.token.expose(), "tok");
    assert_eq!(number.max_mps, Some(40));
}

#[test]
fn refusals_name_the_entry_and_never_the_token() {
    let literal = TWO.replace("env:ACME_WA_TOKEN", "EAAGsecretvalue");
    let e = refusal(&literal);
    assert!(
        e.contains("tenant[0] (\"acme\"): whatsapp[0]: token must be a reference"),
        "{e}"
    );
    assert!(!e.contains("EAAGsecretvalue"));

    let twice = TWO.replace("keys = [\"globex\"]", "keys = [\"globex\", \"acme-web\"]");
    assert!(refusal(&twice).contains("key \"acme-web\" is in two tenants"));

    let unknown = TWO.replace("keys = [\"globex\"]", "keys = [\"globex\", \"nobody\"]");
    assert!(refusal(&unknown).contains("key id \"nobody\" is not in API_KEYS"));

    let number_twice = format!(
        "{TWO}whatsapp = [{{ phone_number_id = \"111\", token = \"secretsmanager:wa\" }}]\n"
    );
    assert!(refusal(&number_twice).contains("WhatsApp number \"111\" is in two tenants"));

    let sender_twice = format!("{TWO}sms_senders = [\"14155550100\"]\n");
    assert!(refusal(&sender_twice).contains("SMS sender \"14155550100\" is in two tenants"));

    let orphan = TWO.replace("keys = [\"globex\"]", "keys = []");
    assert!(refusal(&orphan).contains("API key \"globex\" belongs to no tenant"));

    let unset = TWO.replace("env:ACME_WA_TOKEN", "env:UNSET");
    assert!(refusal(&unset).contains("the token env:UNSET is not set"));

    let outside = TWO.replace("env:ACME_WA_TOKEN", "secretsmanager:wa");
    assert!(refusal(&outside).contains("outside TENANT_SECRET_PREFIX (\"herald/\")"));
    assert!(refusal("[[tenant]]\nid = \"Bad Id\"\n").contains("id must be"));
    assert!(refusal("[[tenant]]\nid = \"a\"\nsecret = 1\n").contains("unknown field"));
}

#[test]
fn a_send_may_use_its_own_senders_only() {
    let t = load(TWO).unwrap();
    let wa = Channel::Whatsapp;
    let sms = Channel::Sms;
    assert_eq!(t.sender("acme", wa, None), Ok(Some("111".into())));
    assert_eq!(t.sender("acme", wa, Some("999")), Err(NotAllowed::Sender));
    assert_eq!(t.sender("acme", sms, None), Ok(Some("ACME".into())));
    assert_eq!(
        t.sender("acme", sms, Some("14155550100")),
        Ok(Some("14155550100".into()))
    );
    // globex names none: the deployment's, and nothing else.
    assert_eq!(t.sender("globex", wa, None), Ok(Some("999".into())));
    let no_deployment = Tenants::from_file(t.all().to_vec(), None, None);
    assert_eq!(
        no_deployment.sender("globex", wa, None),
        Err(NotAllowed::NoNumber)
    );
    assert_eq!(t.sender("globex", wa, Some("111")), Err(NotAllowed::Sender));
    assert_eq!(
        t.sender("globex", sms, Some("ACME")),
        Err(NotAllowed::Sender)
    );
    assert_eq!(t.sender("globex", sms, None), Ok(None));
    assert_eq!(
        t.sender("globex", sms, Some("HERALD")),
        Ok(Some("HERALD".into()))
    );
}

#[test]
fn without_a_file_nothing_changes() {
    let t = Tenants::single(Some("999".into()), None);
    assert!(!t.configured());
    assert_eq!(&*t.of_key("anyone"), DEFAULT_TENANT);
    assert_eq!(
        t.sender("default", Channel::Sms, Some("ANY")),
        Ok(Some("ANY".into()))
    );
    assert_eq!(t.sender("default", Channel::Sms, None), Ok(None));
    assert_eq!(t.sender("default", Channel::Whatsapp, None), Ok(None));
    assert_eq!(
        t.sender("default", Channel::Whatsapp, Some("999")),
        Ok(Some("999".into()))
    );
    assert_eq!(
        t.sender("default", Channel::Whatsapp, Some("1")),
        Err(NotAllowed::Sender)
    );
    assert_eq!(
        t.owners_of(Channel::Sms, Some("123")),
        vec![Arc::<str>::from(DEFAULT_TENANT)]
    );
}

#[test]
fn inbound_consent_belongs_to_the_receiving_numbers_tenant() {
    let t = load(TWO).unwrap();
    let ids = |v: Vec<Arc<str>>| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(t.owners_of(Channel::Whatsapp, Some("111"))), ["acme"]);
    assert_eq!(
        ids(t.owners_of(Channel::Whatsapp, Some("999"))),
        ["globex", "default"]
    );
    assert_eq!(
        ids(t.owners_of(Channel::Sms, Some("14155550100"))),
        ["acme"]
    );
    assert_eq!(ids(t.owners_of(Channel::Sms, None)), ["globex", "default"]);
}

#[test]
fn a_stop_to_a_number_no_tenant_names_speaks_for_every_tenant() {
    let both_own = TWO.replace(
        "keys = [\"globex\"]",
        "keys = [\"globex\"]\nwhatsapp = [{ phone_number_id = \"222\", token = \"env:ACME_WA_TOKEN\" }]",
    );
    let t = load(&both_own).unwrap();
    let ids = |v: Vec<Arc<str>>| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(t.owners_of(Channel::Whatsapp, Some("222"))), ["globex"]);
    assert_eq!(
        ids(t.owners_of(Channel::Whatsapp, Some("333"))),
        ["acme", "globex", "default"]
    );
}

#[test]
fn tenants_on_the_deployments_sender_honour_the_opt_outs_from_before_the_file() {
    let t = load(TWO).unwrap();
    let holders = |tenant, channel| t.consent_holders(tenant, channel).collect::<Vec<_>>();
    assert_eq!(holders("acme", Channel::Whatsapp), ["acme"]);
    assert_eq!(holders("acme", Channel::Sms), ["acme"]);
    assert_eq!(holders("globex", Channel::Whatsapp), ["globex", "default"]);
    assert_eq!(holders("globex", Channel::Sms), ["globex", "default"]);
    // A file with its own `default` tenant: its opt-outs are its own.
    let named_default = load(&TWO.replace("id = \"globex\"", "id = \"default\"")).unwrap();
    assert_eq!(
        named_default
            .consent_holders("default", Channel::Sms)
            .collect::<Vec<_>>(),
        ["default"]
    );
    // Without a file there is one tenant, `default`.
    let single = Tenants::single(Some("999".into()), None);
    assert_eq!(
        single
            .consent_holders("default", Channel::Whatsapp)
            .collect::<Vec<_>>(),
        ["default"]
    );
}

#[test]
fn no_tenant_may_name_the_deployments_number_or_sender() {
    let number = refusal(&TWO.replace("phone_number_id = \"111\"", "phone_number_id = \"999\""));
    assert!(number.contains("WHATSAPP_PHONE_NUMBER_ID"), "{number}");
    assert!(number.contains("tenant[0]"), "{number}");
    let sender = refusal(&TWO.replace("\"ACME\", ", "\"HERALD\", "));
    assert!(sender.contains("INFOBIP_SENDER"), "{sender}");
}

#[test]
fn a_file_that_is_not_toml_is_refused_without_its_text() {
    let broken = TWO.replace("token = \"env:ACME_WA_TOKEN\"", "token = \"EAAGsecretvalue");
    let message = refusal(&broken);
    assert!(!message.contains("EAAGsecretvalue"), "{message}");
    assert!(message.starts_with("line 6, column 1: "), "{message}");
    let typed = TWO.replace("max_mps = 40", "max_mps = \"EAAGsecretvalue\"");
    let message = refusal(&typed);
    assert!(!message.contains("EAAGsecretvalue"), "{message}");
}
