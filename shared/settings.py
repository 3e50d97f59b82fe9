"""Settings read from the environment, one class for every service."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from shared.domain.vocabulary import DEFAULT_COUNTY_TIME_ZONE

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent

SERVICE_NAMES = ("intake", "escalation", "notification", "audit")
# The duty console: a service of its own, a client of the four above through their REST APIs.
CONSOLE = "console"


class ChannelLimits(BaseModel):
    """How hard notification may push one channel's gateway."""

    concurrency: int = Field(default=8, ge=1, description="sends in flight at once")
    rate_per_second: float = Field(default=10.0, gt=0, description="sustained sends per second")
    burst: int = Field(default=10, ge=1, description="sends allowed at once after a quiet spell")


class Settings(BaseSettings):
    """Everything a service reads from its environment.

    Unset `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` mean "start local ones" for `make run`
    and the tests; a service process itself always needs both.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    # `production`: every secret and setting of docs/operations.md must be given, or the service
    # stops at start naming what is missing (shared/production.py); no development default
    # (generated keys, unsigned webhooks, a file channel) applies silently.
    deployment_environment: Literal["development", "production"] = "development"

    database_url: str | None = None
    # The login's password apart from the URL, as the database operator's Secret holds it;
    # set, it replaces any password in `DATABASE_URL`.
    database_password: SecretStr | None = None
    # Migrations only: the service's runtime login, granted use of the tables the owner
    # creates (shared/db.grant_runtime_access) and nothing more.
    database_runtime_role: str | None = None
    # Every service session: a statement running longer is cancelled, a transaction left idle
    # longer is ended (its locks released).
    database_statement_timeout_seconds: float = Field(default=30.0, gt=0)
    database_idle_in_transaction_seconds: float = Field(default=60.0, gt=0)
    # The connections each service process keeps, and never more: work past them waits for
    # one (503 after 30 s at the edge). A connection opened past the pool for a burst was
    # closed again after it, each a server process started and its statements prepared anew.
    database_pool_size: int = Field(default=20, ge=1)
    kafka_bootstrap_servers: str | None = None
    # How clients meet the broker: PLAINTEXT locally; SASL_SSL with SCRAM in production, one
    # user per service whose ACLs let it write only its own topic.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # The broker's certificate authority (PEM); unset, the system's.
    kafka_ssl_cafile: Path | None = None
    # Tansu (the local broker) rejects InitProducerId, so idempotence stays a setting.
    kafka_enable_idempotence: bool = False
    # A consumer that stops heartbeating (a crashed process) loses its partitions after this;
    # until then they wait, also for the process that replaces it.
    kafka_session_timeout_ms: int = Field(default=10000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3000, ge=100)
    # A consumer whose partitions were taken away for a rebalance and not given back within this
    # many seconds starts again, as a new member: a rebalance that never ends (seen after a
    # broker restarted empty) does not keep it out of its group. A rebalance takes seconds.
    kafka_rejoin_limit_seconds: float = Field(default=30.0, ge=1.0)
    kafka_topic_partitions: int = Field(default=6, ge=1)
    kafka_topic_replication_factor: int = Field(default=1, ge=1)
    # How long the broker may hold a consumer's fetch when nothing is there. Apache Kafka answers
    # as soon as a record arrives, whatever this is; Tansu holds the fetch to the end, so the
    # wait is what a record waits on a hop (500 ms, the client default, costs 250 ms a hop).
    kafka_fetch_max_wait_ms: int = Field(default=20, ge=1, le=500)
    # A consumer that has had no record for a second pauses between looks at its partitions,
    # each pause an eighth of its quiet spell so far, at most this long (shared/kafka.py
    # IdleFetching): an idle system then costs the consumers and the broker about one fetch
    # each per this interval instead of one per `kafka_fetch_max_wait_ms`, and a record after
    # a quiet spell waits at most an eighth of it more on its hop (docs/performance.md). 0:
    # never pause, for a broker that answers a waiting fetch at once (Apache Kafka, prod).
    kafka_idle_fetch_interval_ms: int = Field(default=2000, ge=0, le=10000)
    # How often a consumer commits the offsets it has applied (shared/kafka.py): one request
    # for all its partitions per interval instead of one per fetch. A consumer that crashes
    # reads up to this much again, which its inbox absorbs. 0: commit after every fetch.
    kafka_commit_interval_ms: int = Field(default=1000, ge=0, le=60000)
    # How often aiokafka's background fetcher looks around when nothing wakes it (aiokafka's
    # `consumer_timeout_ms`, 200 by default). A fetch answered, a partition resumed and a
    # rebalance each wake it at once; so this only sets how often a paused, idle consumer
    # costs a turn of the event loop: five times a second each, at the default.
    kafka_consumer_timeout_ms: int = Field(default=2000, ge=10, le=10000)
    # The most records a consumer applies in one batch (one transaction). Under a backlog every
    # batch is this full, and what a batch builds is held until its commit: 500 took
    # escalation's peak memory from about 136 to 149 MB for no more incidents a second
    # (docs/performance.md, item 85).
    kafka_batch_max_records: int = Field(default=200, ge=1, le=10000)
    # The most bytes of records one fetch brings, and of one partition's records in it
    # (aiokafka's `fetch_max_bytes` and `max_partition_fetch_bytes`, 50 MiB and 1 MiB by
    # default; Tansu answers at most 5 MiB). A consumer that has fallen behind holds what it
    # fetched until it takes it: audit reads every topic's partitions, and flat out the
    # defaults took its peak memory past 150 MB. Smaller fetches make a consumer that is
    # behind catch up more slowly, since Tansu holds every fetch for its whole wait
    # (docs/performance.md, item 115). A record larger than either still comes.
    kafka_fetch_max_bytes: int = Field(default=2097152, ge=1024)
    kafka_max_partition_fetch_bytes: int = Field(default=524288, ge=1024)
    # How long intake's status projection lets a fetch that brought records wait for more to
    # join their batch (`EventConsumer.linger_seconds`): it is off the alerts' path, and reads
    # every event of escalations.v1 for the one status change of an incident in seven; a status
    # shows this much later at most (docs/performance.md, item 90). 0: never waits.
    intake_status_linger_ms: int = Field(default=250, ge=0, le=5000)
    # The pace of intake's outbox relay (`OutboxRelay`): after a pass that sent reports, the
    # next no sooner than this after it began. Under load the reports of that time go out
    # together and every service downstream takes them as one batch, one transaction and one
    # pass of its relay; a report after a quiet spell goes at once, and one under load waits
    # this much at most (docs/performance.md, items 97 and 108). 0: each pass as soon as reports
    # are in.
    intake_relay_pace_ms: int = Field(default=60, ge=0, le=1000)

    # The county's clock: every time shown to people (alerts, explanations, findings, reports).
    county_time_zone: str = DEFAULT_COUNTY_TIME_ZONE

    @field_validator("county_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @property
    def county_zone(self) -> ZoneInfo:
        return ZoneInfo(self.county_time_zone)

    intake_port: int = 8001
    escalation_port: int = 8002
    notification_port: int = 8003
    audit_port: int = 8004
    console_port: int = 8000
    # Where the console reaches each service's REST API (the cluster's service names in
    # production); unset, this machine on the service's port.
    intake_url: str | None = None
    escalation_url: str | None = None
    notification_url: str | None = None
    audit_url: str | None = None

    # Callers' bearer tokens are verified against these public keys (a JWKS file).
    auth_jwks_file: Path | None = None
    auth_issuer: str = "wushen-justice-bureau"
    auth_audience: str = "correction-emergency"
    # No bearer token is accepted that was minted to live longer than this (exp - iat).
    auth_max_token_seconds: int = Field(default=12 * 3600, ge=60)
    # Personal data at rest (see shared/pii.py): key id → base64 AES-256 key.
    pii_keys: dict[str, SecretStr] = Field(default_factory=dict)
    pii_current_key_id: str | None = None
    # Input discipline at the edge.
    max_request_body_bytes: int = Field(default=256 * 1024, ge=1024)
    rate_limit_per_second: float = Field(default=50.0, gt=0, description="per caller")
    rate_limit_burst: int = Field(default=100, ge=1)

    otel_service_name: str | None = None
    otel_exporter_otlp_endpoint: str | None = None
    # Spans as JSON lines in a file: lets tests see one trace across every process.
    otel_traces_file: Path | None = None
    # The first this many traces begun in a process each second are kept whatever
    # OTEL_TRACES_SAMPLER says; beyond them it decides (shared.telemetry.ReservoirFirst). 0: off.
    traces_reservoir_per_second: float = Field(default=0.0, ge=0)
    log_json: bool = True
    # SIGTERM: finish the records in hand, commit, publish the outbox, flush spans, within this.
    shutdown_grace_seconds: float = Field(default=20.0, gt=0)

    directory_file: Path = REPOSITORY_ROOT / "config" / "directory.yaml"
    policy_file: Path = REPOSITORY_ROOT / "services" / "escalation" / "policy.yaml"
    # A deployment's changes to the policy (deadlines, ladder ...), merged over `policy_file`.
    policy_overrides_file: Path | None = None
    # The escalation service sleeps until its next deadline, woken sooner by new ones; this is
    # the longest it sleeps without looking (a fallback: a new deadline always wakes it).
    deadline_poll_interval_seconds: float = Field(default=30.0, gt=0)
    alerts_file: Path = REPOSITORY_ROOT / ".local" / "alerts.jsonl"
    local_data_dir: Path = REPOSITORY_ROOT / ".local"

    # How long the outbox relay sleeps when no NOTIFY arrives. NOTIFY is the path (each outbox
    # write notifies at commit, and a lost listening connection wakes the relay): this is only
    # a fallback, long so that an idle service sleeps.
    outbox_poll_interval_seconds: float = Field(default=10.0, gt=0)
    # A broker that forgets (docs/operations.md "The broker forgot records"). Sent outbox rows
    # are kept this long, to be sent again should the broker lose them: a week, the topics'
    # retention (deploy/k8s), so whatever a consumer could still read from the broker, however
    # far behind it is (a week-long holiday of a county office), the outbox can give again.
    outbox_retention_hours: float = Field(default=168.0, gt=0)
    # Inbox rows outlive every way an event can come again: from its topic (a week), sent again
    # from the outbox (OUTBOX_RETENTION_HOURS) or replayed from its dead-letter topic (kept 30
    # days): 35 days. A repeat always meets the row of its first delivery, so it is never taken
    # for a new event. Raise it with the topics' retention (the prod overlay does).
    inbox_retention_hours: float = Field(default=840.0, gt=0)
    # How often the relay asks the broker, besides at start, after a failure and when offsets
    # come back lower than before, whether it lost records.
    outbox_broker_check_seconds: float = Field(default=60.0, gt=0)
    migrate_on_startup: bool = True

    # --- notification: acknowledgement (docs/rules.md ACK) ------------------------------------
    # Unacknowledged this long after delivery, an alert goes to the party's next contact.
    notification_ack_seconds: float = Field(default=600.0, gt=0)
    # HMAC key of acknowledgement tokens; every replica needs the same one. Unset, a random key
    # per process is used, so links die with the process: fine locally, wrong in production.
    notification_ack_secret: SecretStr | None = None
    notification_ack_token_ttl_seconds: int = Field(default=86400, ge=1)
    # Where recipients reach notification (the acknowledgement link) and the full record.
    notification_public_base_url: str = "http://127.0.0.1:8003"
    # The incident's page in the duty console (login required).
    notification_record_base_url: str = "http://127.0.0.1:8000/incidents"

    # --- notification: delivery -----------------------------------------------------------------
    notification_max_attempts: int = Field(default=5, ge=1, description="per contact")
    notification_retry_base_seconds: float = Field(default=1.0, gt=0)
    notification_retry_max_seconds: float = Field(default=300.0, gt=0)
    notification_send_timeout_seconds: float = Field(default=10.0, gt=0)
    # A claimed delivery is taken over by another replica after this; longer than a send.
    notification_lease_seconds: float = Field(default=60.0, gt=0)
    notification_breaker_failures: int = Field(default=5, ge=1)
    notification_breaker_cooldown_seconds: float = Field(default=30.0, gt=0)
    notification_channel_limits: dict[str, ChannelLimits] = Field(default_factory=dict)
    # The dispatcher sleeps until the next thing is due (an ACK deadline, a retry, a lease
    # running out) or a NOTIFY wakes it; at most this long, should a NOTIFY be lost.
    notification_dispatch_fallback_seconds: float = Field(default=30.0, gt=0)
    # How long a delivered answer waits for others to join its record (one statement for all,
    # `Dispatcher._record_delivered`): under load one record, one NOTIFY and one relay pass for
    # the answers of several incidents. The send is made and its answer in hand; only the
    # delivery's DELIVERED and its event come this much later. 0: each burst of answers apart.
    notification_record_linger_ms: int = Field(default=50, ge=0, le=1000)
    # How many answers may wait for their record with their channel slots given to the next
    # sends (docs/performance.md, item 117). Past it a send keeps its slot until its answer is
    # recorded: a database slower than the gateways holds the sends back, instead of the
    # answers piling up in memory.
    notification_unrecorded_answers_limit: int = Field(default=256, ge=0)
    # The pace of notification's outbox relay (`OutboxRelay`), as intake's: after a pass that
    # sent events, the next no sooner than this after it began. Its events (an alert sent,
    # delivered, failed, acknowledged) are on no alert's way: the alerts go from the dispatcher
    # itself. Under load the events of that time go out in one pass; one after a quiet spell
    # goes at once, one under load waits this much at most (docs/performance.md, item 107).
    notification_relay_pace_ms: int = Field(default=200, ge=0, le=1000)

    # --- notification: gateways -----------------------------------------------------------------
    # Signs webhook bodies; a secret per contact address overrides it (DingTalk robots too).
    notification_webhook_secret: SecretStr | None = None
    notification_contact_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    notification_sms_url: str | None = None
    notification_sms_token: SecretStr | None = None
    notification_voice_url: str | None = None
    notification_voice_token: SecretStr | None = None
    notification_aliyun_sms_endpoint: str = "https://dysmsapi.aliyuncs.com/"
    notification_aliyun_access_key_id: str | None = None
    notification_aliyun_access_key_secret: SecretStr | None = None
    notification_aliyun_sms_sign_name: str | None = None
    notification_aliyun_sms_template_code: str | None = None
    notification_smtp_host: str = "127.0.0.1"
    notification_smtp_port: int = 25
    notification_smtp_username: str | None = None
    notification_smtp_password: SecretStr | None = None
    notification_smtp_starttls: bool = False
    notification_smtp_tls: bool = False
    notification_smtp_sender: str = "sqjz-alerts@localhost"

    @model_validator(mode="after")
    def _inbox_outlives_the_outbox(self) -> Settings:
        if self.inbox_retention_hours <= self.outbox_retention_hours:
            raise ValueError(
                "INBOX_RETENTION_HOURS must exceed OUTBOX_RETENTION_HOURS: a record sent again "
                "after a broker loss must still find its inbox row"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_a_send(self) -> Settings:
        if self.notification_lease_seconds <= self.notification_send_timeout_seconds:
            raise ValueError("NOTIFICATION_LEASE_SECONDS must exceed the send timeout")
        return self

    # --- retention (docs/operations.md "Retention and personal data") --------------------------
    # How often a service purges what is past its period (outbox and inbox included), in
    # batches; idle, one indexed query a table: minutes, since idle CPU counts.
    retention_sweep_interval_seconds: float = Field(default=600.0, gt=0)
    # An Idempotency-Key replays its report this long; a retry after it files a new report.
    intake_idempotency_key_retention_hours: float = Field(default=168.0, gt=0)
    # A finished delivery (delivered, failed, cancelled) keeps what it sent, the text and the
    # acknowledgement link, this long; never less than the link lives.
    notification_message_retention_hours: float = Field(default=168.0, gt=0)

    @model_validator(mode="after")
    def _no_link_outlives_its_message(self) -> Settings:
        if self.notification_message_retention_hours * 3600 < (
            self.notification_ack_token_ttl_seconds
        ):
            raise ValueError(
                "NOTIFICATION_MESSAGE_RETENTION_HOURS must cover "
                "NOTIFICATION_ACK_TOKEN_TTL_SECONDS: an acknowledgement link must not outlive "
                "the message that carried it"
            )
        return self

    # Audit: the log's name (checkpoint origin and key name) and its Ed25519 signing key, as a
    # file holding `PRIVATE+KEY+...` or a base64 seed; neither: a dev key in `local_data_dir`.
    audit_log_origin: str = "sqjz.wushen.example/audit"
    audit_signing_key_file: Path | None = None
    audit_signing_key_seed: str | None = None
    # Witnesses whose cosignatures the log accepts: vkeys, separated by commas or spaces.
    audit_witness_keys: str = ""
    audit_checkpoint_interval_seconds: float = Field(default=1.0, gt=0)
    # How long audit's consumer lets a fetch that brought records wait for more to join them
    # (shared/kafka.py `EventConsumer.linger_seconds`): under load fuller batches, each with the
    # fixed statements of one; off the alerts' path, so no alert waits for it, and an event
    # reaches the log this much later at most (docs/performance.md, item 99). 0: never waits.
    audit_batch_linger_ms: int = Field(default=500, ge=0, le=1000)
    # Audit's batches, which it lingers to fill, may be larger than other consumers'
    # (`kafka_batch_max_records`): its log takes a batch in a few statements whatever its size,
    # and batches of 200 appended 10–20% fewer events a second than 500 (docs/performance.md,
    # item 85); its peak memory stays under 150 MB with 500.
    audit_batch_max_records: int = Field(default=500, ge=1, le=10000)
    # A log that already holds leaves but no signed checkpoint (restored, imported, its
    # checkpoints lost) is signed only once an operator states how many leaves they checked:
    # the first checkpoint then covers exactly that many.
    audit_confirmed_first_checkpoint_size: int | None = Field(default=None, ge=1)
    # Personal data in the log is sealed under a data key per incident, each stored wrapped
    # under these key-encryption keys (key id → base64 AES-256 key, like PII_KEYS), the current
    # one wrapping new keys. Unset: a development key kept in `local_data_dir`; production
    # refuses to start without them (shared/production.py).
    audit_key_encryption_keys: dict[str, SecretStr] = Field(default_factory=dict)
    audit_key_encryption_key_id: str | None = None
    # How often the retention job looks for incidents whose personal data is due for erasure.
    audit_retention_interval_seconds: float = Field(default=600.0, gt=0)
    # R12: a first report this long after the incident was discovered is suspected of 瞒报.
    audit_concealment_threshold: timedelta = timedelta(hours=1)
    # The findings follower: how often it looks for new leaves when no append wakes it, and
    # the longest pause between two attempts at a leaf whose review fails.
    audit_findings_poll_interval_seconds: float = Field(default=30.0, gt=0)
    audit_findings_retry_max_seconds: float = Field(default=30.0, gt=0)

    # --- console (services/console) -------------------------------------------------------------
    # Where people reach the console; links in alerts and the login's redirect are built on it.
    console_public_url: str = "http://127.0.0.1:8000"
    # The console speaks to the services for its user with a token it signs itself: this key
    # (PEM, Ed25519 or RSA), whose public half the services trust under `console_signing_key_id`.
    # Unset: the local development key, and then (only then) the console offers a login page
    # that lets anybody choose a party.
    console_signing_key_file: Path | None = None
    console_signing_key_id: str = "console"
    console_token_seconds: int = Field(default=600, ge=60, le=3600)
    console_session_hours: float = Field(default=12.0, gt=0, le=24)
    # OpenID Connect (authorization code with PKCE) against the county's identity provider.
    console_oidc_issuer: str | None = None
    console_oidc_client_id: str | None = None
    console_oidc_client_secret: SecretStr | None = None
    console_oidc_scopes: str = "openid profile"
    # Which claim of the ID token names the party (as `SFS:150626102`, `BLO` ...), or the
    # identity provider's value of it mapped to a party.
    console_oidc_party_claim: str = "party"
    console_oidc_party_map: dict[str, str] = Field(default_factory=dict)
    # Which claim lists the user's roles, and the scopes each role grants; a user with no
    # mapped role gets the party's usual scopes (shared.domain.access.DEFAULT_SCOPES).
    console_oidc_roles_claim: str = "roles"
    console_oidc_role_scopes: dict[str, str] = Field(default_factory=dict)
    console_oidc_name_claim: str = "name"
    # The incident page links its trace: in production the county's trace backend, `{trace_id}`
    # (and `{incident_id}`) filled in; unset, the console's own waterfall when it receives spans.
    console_trace_url_template: str | None = None
    # The console accepts spans over OTLP/HTTP (POST /v1/traces) and shows them: for a local
    # run only (`make run` turns it on), as anybody who reaches the console could send spans.
    console_trace_receiver: bool = False

    @cached_property
    def async_database_url(self) -> str:
        """`DATABASE_URL` in the form SQLAlchemy's asyncpg dialect expects."""
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set")
        url = to_asyncpg_url(self.database_url)
        if self.database_password is None:
            return url
        with_password = make_url(url).set(password=self.database_password.get_secret_value())
        return with_password.render_as_string(hide_password=False)

    @cached_property
    def plain_database_url(self) -> str:
        """`DATABASE_URL` in the libpq form asyncpg's own `connect` expects."""
        return self.async_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap_servers:
            raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set")
        return self.kafka_bootstrap_servers

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def url_of(self, service: str) -> str:
        """Where `service`'s REST API answers: `<SERVICE>_URL`, or this machine's port."""
        return getattr(self, f"{service}_url") or f"http://127.0.0.1:{self.port_of(service)}"


def to_asyncpg_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")
