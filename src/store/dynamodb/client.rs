//! Reaching DynamoDB: the SDK client (the standard AWS configuration, with the store's endpoint
//! and region when given), built once and checked against the table, and how its errors are told
//! to an operator.

use super::*;

impl DynamoEndpoint {
    pub(super) async fn client(&self) -> Result<&Client> {
        if let Some(why) = self.unreachable.get() {
            return Err(anyhow!(
                "not attempted: table {:?} was unreachable earlier in this run ({why})",
                self.config.table
            ));
        }
        self.ready
            .get_or_init(|| async { self.connect().await.map_err(|e| format!("{e:#}")) })
            .await
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }

    /// Builds the client, resolves credentials and checks the table's key schema.
    async fn connect(&self) -> Result<Client> {
        let (client, region) = self.sdk_client().await?;
        self.check_table(&client, &region).await?;
        Ok(client)
    }

    /// The client for this target's region, endpoint and credentials; returns the region too.
    pub(super) async fn sdk_client(&self) -> Result<(Client, String)> {
        let table = &self.config.table;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(REQUEST_TIMEOUT)
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_max_backoff(Duration::from_secs(2)),
            );
        if let Some(r) = &self.config.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(c) = &self.credentials {
            loader = loader.credentials_provider(c.clone());
        }
        let sdk = loader.load().await;
        let Some(region) = sdk.region().map(|r| r.to_string()) else {
            return Err(anyhow!(
                "no AWS region for DynamoDB table {table:?}: set AWS_REGION (or a profile's region), or `region = \"...\"` in this store of the overrides file"
            ));
        };
        let Some(credentials) = sdk.credentials_provider() else {
            return Err(anyhow!(
                "no AWS credentials provider for DynamoDB table {table:?}"
            ));
        };
        if let Err(e) = credentials.provide_credentials().await {
            return Err(anyhow!(
                "no usable AWS credentials for DynamoDB table {table:?}: set AWS_PROFILE (and run `aws sso login` for an SSO profile) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then run again ({})",
                chain(&e)
            ));
        }
        let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if let Some(e) = &self.config.endpoint_url {
            config = config.endpoint_url(e);
        }
        Ok((Client::from_conf(config.build()), region))
    }

    /// Fails unless the table exists with the key schema of the SDKs and Relay.
    async fn check_table(&self, client: &Client, region: &str) -> Result<()> {
        let table = &self.config.table;
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| self.explain(&format!("describing table {table:?} in region {region}"), e))?;
        let desc = described
            .table()
            .ok_or_else(|| anyhow!("DescribeTable for {table:?} returned no table description"))?;
        let type_of = |name: &str| {
            desc.attribute_definitions()
                .iter()
                .find(|a| a.attribute_name() == name)
                .map(|a| a.attribute_type().clone())
        };
        let role_of = |key_type: KeyType| {
            desc.key_schema()
                .iter()
                .find(|k| *k.key_type() == key_type)
                .map(|k| (k.attribute_name().to_owned(), type_of(k.attribute_name())))
        };
        let hash = role_of(KeyType::Hash);
        let range = role_of(KeyType::Range);
        let string = Some(ScalarAttributeType::S);
        if hash != Some(("namespace".to_owned(), string.clone())) || range != Some(("key".to_owned(), string))
        {
            let show = |k: Option<(String, Option<ScalarAttributeType>)>| match k {
                Some((name, Some(t))) => format!("{name:?} ({})", t.as_str()),
                Some((name, None)) => format!("{name:?}"),
                None => "none".to_owned(),
            };
            return Err(anyhow!(
                "DynamoDB table {table:?} has partition key {} and sort key {}, but the LaunchDarkly SDKs and Relay use partition key \"namespace\" (S) and sort key \"key\" (S); point `table` at the table Relay uses",
                show(hash),
                show(range)
            ));
        }
        Ok(())
    }

    /// An SDK error as a message that says what failed, why, and what to do.
    pub(super) fn explain<E>(
        &self,
        doing: &str,
        err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let table = &self.config.table;
        let at = self
            .endpoint_shown
            .as_ref()
            .map(|e| format!(" at {e}"))
            .unwrap_or_default();
        let detail = chain(&err);
        let hint = match &err {
            SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => format!(
                "cannot reach DynamoDB{at} (connect timeout {}s, {MAX_ATTEMPTS} attempts); check the endpoint and the network, then run again",
                CONNECT_TIMEOUT.as_secs()
            ),
            SdkError::TimeoutError(_) => format!(
                "DynamoDB{at} did not answer within {}s ({MAX_ATTEMPTS} attempts); check the endpoint, then run again",
                REQUEST_TIMEOUT.as_secs()
            ),
            _ => match err.code() {
                Some("ResourceNotFoundException") => format!(
                    "table {table:?} does not exist{at}; create it with partition key \"namespace\" (S) and sort key \"key\" (S), or fix `table` / the region"
                ),
                Some("ThrottlingException" | "ProvisionedThroughputExceededException" | "RequestLimitExceeded") => format!(
                    "DynamoDB kept throttling requests to table {table:?} after {MAX_ATTEMPTS} attempts; raise the table's capacity or wait, then run again (re-running is safe)"
                ),
                Some(
                    "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "AccessDeniedException"
                    | "ExpiredTokenException"
                    | "MissingAuthenticationTokenException",
                ) => "DynamoDB rejected the AWS credentials or they lack rights on this table; check AWS_PROFILE / the access keys and the IAM policy (dynamodb:DescribeTable, BatchGetItem, GetItem, PutItem)".to_owned(),
                _ => "DynamoDB request failed".to_owned(),
            },
        };
        if matches!(&err, SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout())
            || matches!(&err, SdkError::TimeoutError(_))
        {
            let _ = self.unreachable.set(hint.clone());
        }
        anyhow!("{doing}: {hint} ({detail})")
    }
}
