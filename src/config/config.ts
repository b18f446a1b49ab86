import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import Holidays from 'date-holidays';
import { IANAZone } from 'luxon';
import cron from 'node-cron';
import { z } from 'zod';

const isoDuration = z
  .string()
  .regex(/^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$/, 'must be an ISO-8601 duration such as PT2S or PT15M');

const herId = z.string().regex(/^\d+$/, 'must be a HER-id (digits only)');

/** how a payload part leaves for a partner: CMS EnvelopedData, or the business document in clear (DESIGN §4.6) */
const payloadMode = z.enum(['encrypted', 'plain']);
const contentCipher = z.enum(['aes-256-cbc', 'des-ede3-cbc']);
const keyTransport = z.enum(['rsa-pkcs1', 'rsa-oaep']);

const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be a time of day HH:MM');

export const configSchema = z
  .object({
    ownHerId: herId,
    broker: z
      .object({
        url: z.string().regex(/^amqps?:\/\//, 'must be an amqp:// or amqps:// URL'),
        prefetch: z.number().int().min(1).max(500),
        confirmTimeout: isoDuration,
        reconnectInitialDelay: isoDuration,
        reconnectMaxDelay: isoDuration,
        deliveryLimit: z.number().int().min(1),
        queues: z.object({
          epjOutbound: z.string().min(1),
          epjInbound: z.string().min(1),
          nhnInbound: z.string().min(1),
          dlq: z.string().min(1),
          /** the durable queue bound to every alert kind (default `<alerts exchange>.all`): an alert always has a route */
          alerts: z.string().min(1).optional(),
        }),
        exchanges: z.object({ nhnOutbound: z.string().min(1), alerts: z.string().min(1) }),
        /** declare and bind one queue per receiving service (`<prefix><herId>`); for demos and tests */
        receiverQueuePrefix: z.string().optional(),
      })
      .strict(),
    database: z.object({ url: z.string().regex(/^(sqlite:|postgres(ql)?:\/\/)/, 'must start with sqlite: or postgres://') }).strict(),
    /**
     * host: the address the HTTP listener binds to; loopback unless configured otherwise (a container sets 0.0.0.0).
     * tls: serve HTTPS with this key and certificate (PEM files); the console's cookie is then Secure.
     */
    http: z
      .object({
        port: z.number().int().min(0).max(65535),
        host: z.string().min(1).default('127.0.0.1'),
        tls: z
          .object({ keyFile: z.string().min(1), certFile: z.string().min(1) })
          .strict()
          .optional(),
      })
      .strict(),
    apiToken: z.string().optional(),
    schemaDir: z.string().min(1),
    limits: z.object({ maxMessageBytes: z.number().int().min(1024) }).strict(),
    retry: z
      .object({
        /** in-place retries of a transient failure before the delivery is returned to the queue */
        initialDelay: isoDuration,
        maxDelay: isoDuration,
        maxAttempts: z.number().int().min(1),
      })
      .strict(),
    signing: z
      .object({
        keyFile: z.string().min(1),
        certFile: z.string().min(1),
        algorithm: z.enum(['rsa-sha256', 'rsa-sha1']),
        /** per receiving level-2 HER-id: legacy partners that only verify rsa-sha1 */
        partnerAlgorithms: z.record(herId, z.enum(['rsa-sha256', 'rsa-sha1'])).default({}),
        /** also put an enveloped ds:Signature inside MsgHead */
        signMsgHead: z.boolean(),
      })
      .strict(),
    encryption: z
      .object({
        /** the gateway's own decryption keys, each with its certificate; several during a certificate rollover (DESIGN §4.6) */
        keys: z.array(z.object({ keyFile: z.string().min(1), certFile: z.string().min(1) }).strict()).default([]),
        /** incoming payloads in clear text: accepted from every partner ('all'), or only from `plainPartners` ('listed') */
        acceptPlain: z.enum(['all', 'listed']).default('all'),
        /** HER-ids (as verified on the ebXML signature) allowed to send clear-text payloads when acceptPlain is 'listed' */
        plainPartners: z.array(herId).default([]),
        /** outgoing payloads: CMS EnvelopedData to the receiver's encryption certificate, unless the receiver is configured plain */
        outbound: z
          .object({
            /** for every partner not named in `partners` */
            payload: payloadMode.default('encrypted'),
            contentCipher: contentCipher.default('aes-256-cbc'),
            keyTransport: keyTransport.default('rsa-pkcs1'),
            /** per receiving HER-id: plain (the demo, some tests), or other algorithms for a partner that needs them */
            partners: z
              .record(
                herId,
                z.object({ payload: payloadMode.optional(), contentCipher: contentCipher.optional(), keyTransport: keyTransport.optional() }).strict(),
              )
              .default({}),
          })
          .strict()
          .default({ payload: 'encrypted', contentCipher: 'aes-256-cbc', keyTransport: 'rsa-pkcs1', partners: {} }),
      })
      .strict()
      .default({
        keys: [],
        acceptPlain: 'all',
        plainPartners: [],
        outbound: { payload: 'encrypted', contentCipher: 'aes-256-cbc', keyTransport: 'rsa-pkcs1', partners: {} },
      }),
    /** CA certificates (PEM files) that partner and own certificates must chain to; none = not checked (DESIGN §4.6) */
    trust: z
      .object({
        anchors: z.array(z.string().min(1)).default([]),
        /** partner signing certificates' CRLs (with anchors): a CRL that cannot be had is accepted with an alert (soft-fail) or makes the message wait (hard-fail) */
        crl: z
          .object({ mode: z.enum(['soft-fail', 'hard-fail']).default('soft-fail'), timeout: isoDuration.default('PT10S') })
          .strict()
          .default({ mode: 'soft-fail', timeout: 'PT10S' }),
      })
      .strict()
      .default({ anchors: [], crl: { mode: 'soft-fail', timeout: 'PT10S' } }),
    /** NHN's CPPA register (DESIGN §4.6): the CPA per pair of parties; without `url` HIS 1037's defaults serve every partner */
    cppa: z
      .object({
        url: z
          .string()
          .regex(/^https?:\/\//, 'must be an http:// or https:// URL')
          .optional(),
        /** how long an answer serves before it is asked again (a stale one still serves while the register is unreachable) */
        cacheTtl: isoDuration.default('PT1H'),
        timeout: isoDuration.default('PT10S'),
      })
      .strict()
      .default({ cacheTtl: 'PT1H', timeout: 'PT10S' }),
    /** NHN's Adresseregister, live (DESIGN §4.6): without `url` the snapshot alone serves */
    addressRegister: z
      .object({
        url: z
          .string()
          .regex(/^https?:\/\//, 'must be an http:// or https:// URL')
          .optional(),
        user: z.string().optional(),
        password: z.string().optional(),
        /** how long an answer serves before it is fetched again (a stale one still serves while AR is unreachable) */
        cacheTtl: isoDuration.default('PT1H'),
        /** per request */
        timeout: isoDuration.default('PT10S'),
        /** the register round: the snapshot file read again if it changed, expired AR answers fetched again, held messages tried again */
        checkInterval: isoDuration.default('PT1M'),
        /** bydel code → the bydel organisation's HER-id (AR has no bydel field); default: from the snapshot */
        bydelOrganisations: z.record(z.string().regex(/^0301\d{2}$/, 'must be a bydel code 0301xx'), herId).optional(),
      })
      .strict()
      .default({ cacheTtl: 'PT1H', timeout: 'PT10S', checkInterval: 'PT1M' }),
    routing: z
      .object({
        addressRegisterFile: z.string().min(1),
        postcodeIndexFile: z.string().min(1),
        overridesFile: z.string().optional(),
        /** address index files from `routing build-index`, each with its own validity period */
        addressIndexFiles: z.array(z.string().min(1)).optional(),
        /** level-1 HER-ids of Oslo kommune whose messages are routed to a bydel; default: from the snapshot */
        routeByBydel: z.array(herId).optional(),
        /** minimum share of a postcode's population in one bydel before the postcode alone decides */
        postcodeMinShare: z.number().min(0.5).max(1),
        /** message type → service code (8663) of the bydel service that receives it */
        serviceByType: z.record(z.string(), z.string()),
        /** how long after its LOG_INNLAGT a stay's later messages still follow it to its bydel (docs/routing.md) */
        stayWindow: isoDuration.default('P90D'),
      })
      .strict(),
    tracking: z
      .object({
        /** key of the HMAC that turns a patient's id into `patient_key` (the answer fallback match) */
        patientKeySecret: z
          .string({ error: 'required: the secret of the keyed patient hash; set GATEWAY_PATIENT_KEY_SECRET' })
          .min(16, 'must be at least 16 characters'),
        /** how long after an answer-less LOG_UTSKRIVNINGSKLAR the fallback still matches an answer */
        answerFallbackWindow: isoDuration,
        deadlines: z
          .object({
            transportAck: isoDuration,
            appRec: isoDuration,
            /** AppRec 1.1 §3.3.6: no AppRec 96 h after GenDate counts as negative */
            appRecNegativeAfter: isoDuration,
            answer: isoDuration,
            innleggelsesrapport: isoDuration,
          })
          .strict(),
        /**
         * Reliable messaging out (ebMS 2.0 §6.4): an outgoing message not acknowledged by its
         * transport-ack deadline is resent with the same eb:MessageId, `count` times, `interval`
         * apart; then transport-ack-missing fires critical. 0 resends: it fires at the deadline.
         */
        transportRetry: z
          .object({ interval: isoDuration, count: z.number().int().min(0).max(20) })
          .strict()
          .default({ interval: 'PT30M', count: 3 }),
        /** the answer deadline counts only this time (DESIGN §3 C) */
        workingTime: z
          .object({
            timeZone: z.string().refine((zone) => IANAZone.isValidZone(zone), 'must be an IANA time zone such as Europe/Oslo'),
            start: hhmm,
            end: hhmm,
            /** ISO weekdays: 1 = Monday … 7 = Sunday */
            weekdays: z.array(z.number().int().min(1).max(7)).min(1),
            /** country whose public holidays (date-holidays) are not working days */
            holidayCountry: z.string().refine((c) => Object.hasOwn(new Holidays().getCountries(), c), 'must be a country date-holidays knows, such as NO'),
            /** days whose working time ends early, "MM-DD" → "HH:MM": julaften and nyttårsaften are not working afternoons */
            halfDays: z
              .record(z.string().regex(/^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/, 'must be MM-DD'), hhmm)
              .default({ '12-24': '12:00', '12-31': '12:00' }),
          })
          .strict()
          // "HH:MM" strings compare as times of day.
          .refine((w) => w.end > w.start, { message: 'must end after it starts', path: ['end'] }),
        scheduler: z
          .object({
            /** node-cron expression (with seconds) of the deadline tick */
            cron: z.string().refine((e) => cron.validate(e), 'must be a node-cron expression such as */30 * * * * *'),
            /** rows one tick handles per step; the rest wait for the next tick */
            batchSize: z.number().int().min(1),
          })
          .strict(),
      })
      .strict(),
    alerts: z
      .object({
        /** reminder while a condition stays open: "end-of-working-day" or an ISO-8601 interval */
        reminder: z.union([z.literal('end-of-working-day'), isoDuration]),
        /** optional HTTP endpoint that receives every alert as JSON (POST) */
        webhookUrl: z.string().url().optional(),
        /** the key of the webhook requests' HMAC-SHA256 signature header (x-plo-gateway-signature) */
        webhookSecret: z.string().min(16, 'must be at least 16 characters').optional(),
        webhookTimeout: isoDuration,
        webhookRetry: z.object({ initialDelay: isoDuration, maxDelay: isoDuration, maxAttempts: z.number().int().min(1) }).strict(),
      })
      .strict(),
    /** SIGTERM/SIGINT: how long to finish in-flight work before exiting anyway (then with exit code 1) */
    shutdownGrace: isoDuration.default('PT30S'),
    retention: z
      .object({
        /** payload bodies (messages, outbox, dead letters) of resolved messages older than this are deleted */
        payloadDays: z.number().int().min(1),
        /** how often the retention job runs */
        interval: isoDuration,
      })
      .strict()
      .default({ payloadDays: 90, interval: 'PT1H' }),
    ops: z
      .object({
        /** consume gateway.dlq into the store (dlq list/show/replay/discard work on the store) */
        recordDeadLetters: z.boolean(),
        /** how often the ops alerts (dlq-not-empty, queue-backlog, no-traffic) are evaluated */
        checkInterval: isoDuration,
        /** queue-backlog fires above this many ready messages in epj.outbound, nhn.inbound or epj.inbound */
        queueDepthMax: z.number().int().min(1),
        /** … or when messages have waited this long in such a queue without any consumer */
        queueWaitMax: isoDuration,
        /** no-traffic fires after this much working time without a message from the EPJ */
        noTrafficFor: isoDuration,
        /** certificate-expiring fires this long before the gateway's own certificates, and those of partners it used in that time, expire */
        certificateWarning: isoDuration.default('P30D'),
        /** how often certificates are checked for that */
        certificateCheckInterval: isoDuration.default('PT1H'),
      })
      .strict()
      .default({
        recordDeadLetters: true,
        checkInterval: 'PT1M',
        queueDepthMax: 1000,
        queueWaitMax: 'PT10M',
        noTrafficFor: 'PT2H',
        certificateWarning: 'P30D',
        certificateCheckInterval: 'PT1H',
      }),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  })
  .strict();

export type GatewayConfig = z.infer<typeof configSchema>;

/** Environment variables of DESIGN §4.2, applied on top of the JSON file. */
type JsonObject = { [key: string]: unknown };

function applyEnv(raw: JsonObject, env: NodeJS.ProcessEnv): JsonObject {
  const c = structuredClone(raw);
  const set = (path: string[], value: unknown) => {
    let o = c;
    for (const k of path.slice(0, -1)) {
      o[k] ??= {};
      o = o[k] as JsonObject;
    }
    o[path[path.length - 1]] = value;
  };
  if (env.AMQP_URL) set(['broker', 'url'], env.AMQP_URL);
  if (env.DATABASE_URL) set(['database', 'url'], env.DATABASE_URL);
  if (env.GATEWAY_HTTP_PORT) set(['http', 'port'], Number(env.GATEWAY_HTTP_PORT));
  if (env.GATEWAY_HTTP_HOST) set(['http', 'host'], env.GATEWAY_HTTP_HOST);
  if (env.GATEWAY_HTTP_TLS_KEY || env.GATEWAY_HTTP_TLS_CERT)
    set(['http', 'tls'], { keyFile: env.GATEWAY_HTTP_TLS_KEY ?? '', certFile: env.GATEWAY_HTTP_TLS_CERT ?? '' });
  if (env.GATEWAY_API_TOKEN) set(['apiToken'], env.GATEWAY_API_TOKEN);
  if (env.GATEWAY_SCHEMA_DIR) set(['schemaDir'], env.GATEWAY_SCHEMA_DIR);
  if (env.GATEWAY_SIGNING_KEY) set(['signing', 'keyFile'], env.GATEWAY_SIGNING_KEY);
  if (env.GATEWAY_SIGNING_CERT) set(['signing', 'certFile'], env.GATEWAY_SIGNING_CERT);
  if (env.GATEWAY_ENCRYPTION_KEY || env.GATEWAY_ENCRYPTION_CERT) {
    // Comma-separated, in the same order: the n-th key belongs to the n-th certificate.
    const list = (v?: string) =>
      (v ?? '')
        .split(',')
        .map((f) => f.trim())
        .filter(Boolean);
    const keys = list(env.GATEWAY_ENCRYPTION_KEY);
    const certs = list(env.GATEWAY_ENCRYPTION_CERT);
    set(
      ['encryption', 'keys'],
      Array.from({ length: Math.max(keys.length, certs.length) }, (_, i) => ({ keyFile: keys[i], certFile: certs[i] })),
    );
  }
  if (env.GATEWAY_ADDRESS_REGISTER) set(['routing', 'addressRegisterFile'], env.GATEWAY_ADDRESS_REGISTER);
  if (env.GATEWAY_TRUST_ANCHORS)
    set(
      ['trust', 'anchors'],
      env.GATEWAY_TRUST_ANCHORS.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
  if (env.GATEWAY_ADDRESS_REGISTER_URL) set(['addressRegister', 'url'], env.GATEWAY_ADDRESS_REGISTER_URL);
  if (env.GATEWAY_CPPA_URL) set(['cppa', 'url'], env.GATEWAY_CPPA_URL);
  if (env.GATEWAY_ADDRESS_REGISTER_USER) set(['addressRegister', 'user'], env.GATEWAY_ADDRESS_REGISTER_USER);
  if (env.GATEWAY_ADDRESS_REGISTER_PASSWORD) set(['addressRegister', 'password'], env.GATEWAY_ADDRESS_REGISTER_PASSWORD);
  if (env.GATEWAY_POSTCODE_INDEX) set(['routing', 'postcodeIndexFile'], env.GATEWAY_POSTCODE_INDEX);
  if (env.GATEWAY_ADDRESS_INDEX)
    set(
      ['routing', 'addressIndexFiles'],
      env.GATEWAY_ADDRESS_INDEX.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
  if (env.GATEWAY_ROUTE_BY_BYDEL)
    set(
      ['routing', 'routeByBydel'],
      env.GATEWAY_ROUTE_BY_BYDEL.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
  if (env.GATEWAY_OWN_HER_ID) set(['ownHerId'], env.GATEWAY_OWN_HER_ID);
  if (env.GATEWAY_LOG_LEVEL) set(['logLevel'], env.GATEWAY_LOG_LEVEL);
  if (env.GATEWAY_PATIENT_KEY_SECRET) set(['tracking', 'patientKeySecret'], env.GATEWAY_PATIENT_KEY_SECRET);
  if (env.GATEWAY_ALERT_WEBHOOK_URL) set(['alerts', 'webhookUrl'], env.GATEWAY_ALERT_WEBHOOK_URL);
  if (env.GATEWAY_ALERT_WEBHOOK_SECRET) set(['alerts', 'webhookSecret'], env.GATEWAY_ALERT_WEBHOOK_SECRET);
  return c;
}

export type ConfigLoad = { ok: true; config: GatewayConfig } | { ok: false; problems: string[] };

/**
 * Reads and validates the configuration. Relative paths in the JSON file are resolved
 * against the working directory (as in every example in the README), so that the same
 * config works from `npm start` and from the container.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ConfigLoad {
  const file = resolve(env.GATEWAY_CONFIG ?? 'config/default.json');
  let raw: JsonObject;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    return { ok: false, problems: [`${file}: cannot be read as JSON (${(e as Error).message})`] };
  }
  const parsed = configSchema.safeParse(applyEnv(raw, env));
  if (!parsed.success) {
    return {
      ok: false,
      problems: parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
    };
  }
  const config = parsed.data;
  const { signing, routing } = config;
  signing.keyFile = resolve(signing.keyFile);
  signing.certFile = resolve(signing.certFile);
  if (config.http.tls) config.http.tls = { keyFile: resolve(config.http.tls.keyFile), certFile: resolve(config.http.tls.certFile) };
  config.trust.anchors = config.trust.anchors.map((f) => resolve(f));
  config.encryption.keys = config.encryption.keys.map((k) => ({ keyFile: resolve(k.keyFile), certFile: resolve(k.certFile) }));
  routing.addressRegisterFile = resolve(routing.addressRegisterFile);
  routing.postcodeIndexFile = resolve(routing.postcodeIndexFile);
  if (routing.overridesFile) routing.overridesFile = resolve(routing.overridesFile);
  config.routing.addressIndexFiles = config.routing.addressIndexFiles?.map((f) => resolve(f));
  config.schemaDir = resolve(config.schemaDir);
  return { ok: true, config };
}

/** ISO-8601 duration → milliseconds (years and months are not accepted for timers). */
export function durationMs(iso: string): number {
  const m = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(iso);
  if (!m) throw new Error(`unsupported duration ${iso}`);
  const [, w, d, h, min, s] = m;
  return ((((Number(w ?? 0) * 7 + Number(d ?? 0)) * 24 + Number(h ?? 0)) * 60 + Number(min ?? 0)) * 60 + Number(s ?? 0)) * 1000;
}
