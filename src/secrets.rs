//! Provider secrets read from AWS Secrets Manager at start-up, so that a
//! deployment never holds them as plain environment values (readable by
//! anyone with `lambda:GetFunctionConfiguration`): `<VAR>_SECRET_ID` names a
//! secret whose `SecretString` is the value of `<VAR>`. Read once, before the
//! configuration, with one `GetSecretValue` call per secret; setting both
//! `<VAR>` and `<VAR>_SECRET_ID` is refused, as is a secret that cannot be
//! read. Errors name the variable and the AWS error code, never a value.

use std::collections::HashMap;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;

use crate::config::{ConfigError, SECRET_VARIABLES};

/// The values of the providers' secret variables (`SECRET_VARIABLES`) whose `<VAR>_SECRET_ID` is set in
/// `lookup`, read from Secrets Manager; empty (and no AWS call) when none is.
pub async fn resolve(
    lookup: &dyn Fn(&str) -> Option<String>,
    timeouts: crate::config::AwsTimeouts,
) -> Result<HashMap<String, String>, ConfigError> {
    let mut wanted = Vec::new();
    for var in SECRET_VARIABLES {
        let reference = format!("{var}_SECRET_ID");
        let Some(id) = lookup(&reference).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        if lookup(var).is_some_and(|v| !v.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                var: reference,
                reason: format!("is set and so is {var}: set one of them"),
            });
        }
        wanted.push((var.to_owned(), reference, id.trim().to_owned()));
    }
    // TENANTS_FILE's tokens `secretsmanager:NAME`, looked up under that reference.
    // Those outside TENANT_SECRET_PREFIX are not read: the configuration
    // then refuses them by name.
    if let Some(path) = lookup("TENANTS_FILE").filter(|v| !v.trim().is_empty()) {
        let prefix = lookup("TENANT_SECRET_PREFIX").unwrap_or_default();
        for reference in crate::tenants::file::secret_references(path.trim()) {
            let id = reference["secretsmanager:".len()..].to_owned();
            if id.starts_with(prefix.trim()) {
                wanted.push((reference, "TENANTS_FILE".to_owned(), id));
            }
        }
    }
    let mut values = HashMap::new();
    if wanted.is_empty() {
        return Ok(values);
    }
    let client = aws_sdk_secretsmanager::Client::new(&crate::aws::sdk_config(timeouts).await);
    for (var, reference, id) in wanted {
        let output = client
            .get_secret_value()
            .secret_id(&id)
            .send()
            .await
            .map_err(|e| ConfigError::Invalid {
                var: reference.clone(),
                reason: format!(
                    "the secret {id:?} cannot be read: {}: {}",
                    e.code().unwrap_or("no error code"),
                    e.message().unwrap_or("no message (network or credentials)")
                ),
            })?;
        let value = output
            .secret_string()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ConfigError::Invalid {
                var: reference.clone(),
                reason: format!("the secret {id:?} has no SecretString"),
            })?;
        values.insert(var, value.to_owned());
    }
    Ok(values)
}

/// The process environment with the secrets read by [`resolve`] in place of
/// their variables.
pub fn overlay(secrets: HashMap<String, String>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        secrets
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }
}

/// Reads the configuration `from_lookup` builds from the process
/// environment, with the provider secrets named by `<VAR>_SECRET_ID` read
/// from Secrets Manager first.
pub async fn load_config<T>(
    from_lookup: impl Fn(&dyn Fn(&str) -> Option<String>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    let timeouts = crate::config::AwsTimeouts::from_lookup(&env)?;
    let secrets = resolve(&env, timeouts).await?;
    from_lookup(&overlay(secrets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_value_and_a_secret_id_for_one_variable_are_refused() {
        let lookup = |name: &str| match name {
            "INFOBIP_API_KEY" => Some("literal".to_owned()),
            "INFOBIP_API_KEY_SECRET_ID" => Some("herald/infobip".to_owned()),
            _ => None,
        };
        let timeouts = crate::config::AwsTimeouts::from_lookup(&|_| None).unwrap();
        let error = resolve(&lookup, timeouts).await.unwrap_err().to_string();
        assert!(
            error.starts_with("INFOBIP_API_KEY_SECRET_ID is invalid"),
            "{error}"
        );
        assert!(!error.contains("literal"));
    }

    #[tokio::test]
    async fn nothing_is_read_when_no_secret_id_is_set() {
        let timeouts = crate::config::AwsTimeouts::from_lookup(&|_| None).unwrap();
        assert!(resolve(&|_| None, timeouts).await.unwrap().is_empty());
    }
}
