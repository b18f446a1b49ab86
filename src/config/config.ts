import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';

const isoDuration = z
  .string()
  .regex(/^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$/, 'must be an ISO-8601 duration such as PT2S or PT15M');

const herId = z.string().regex(/^\d+$/, 'must be a HER-id (digits only)');

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
        }),
        exchanges: z.object({ nhnOutbound: z.string().min(1), alerts: z.string().min(1) }),
        /** declare and bind one queue per receiving service (`<prefix><herId>`); for demos and tests */
        receiverQueuePrefix: z.string().optional(),
      })
      .strict(),
    database: z.object({ url: z.string().regex(/^(sqlite:|postgres(ql)?:\/\/)/, 'must start with sqlite: or postgres://') }).strict(),
    http: z.object({ port: z.number().int().min(0).max(65535) }).strict(),
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
    routing: z
      .object({
        addressRegisterFile: z.string().min(1),
        postcodeIndexFile: z.string().min(1),
        overridesFile: z.string().optional(),
        /** level-1 HER-ids of Oslo kommune whose messages are routed to a bydel; default: from the snapshot */
        routeByBydel: z.array(herId).optional(),
        /** minimum share of a postcode's population in one bydel before the postcode alone decides */
        postcodeMinShare: z.number().min(0.5).max(1),
        /** message type → service code (8663) of the bydel service that receives it */
        serviceByType: z.record(z.string(), z.string()),
      })
      .strict(),
    tracking: z
      .object({
        /** key of the HMAC that turns a patient's id into `patient_key` (the answer fallback match) */
        patientKeySecret: z.string().min(16, 'must be at least 16 characters'),
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
      })
      .strict(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  })
  .strict();

export type GatewayConfig = z.infer<typeof configSchema>;

/** Environment variables of DESIGN §4.2, applied on top of the JSON file. */
function applyEnv(raw: Record<string, any>, env: NodeJS.ProcessEnv): Record<string, any> {
  const c = structuredClone(raw);
  const set = (path: string[], value: unknown) => {
    let o = c;
    for (const k of path.slice(0, -1)) o = o[k] ??= {};
    o[path[path.length - 1]] = value;
  };
  if (env.AMQP_URL) set(['broker', 'url'], env.AMQP_URL);
  if (env.DATABASE_URL) set(['database', 'url'], env.DATABASE_URL);
  if (env.GATEWAY_HTTP_PORT) set(['http', 'port'], Number(env.GATEWAY_HTTP_PORT));
  if (env.GATEWAY_API_TOKEN) set(['apiToken'], env.GATEWAY_API_TOKEN);
  if (env.GATEWAY_SCHEMA_DIR) set(['schemaDir'], env.GATEWAY_SCHEMA_DIR);
  if (env.GATEWAY_SIGNING_KEY) set(['signing', 'keyFile'], env.GATEWAY_SIGNING_KEY);
  if (env.GATEWAY_SIGNING_CERT) set(['signing', 'certFile'], env.GATEWAY_SIGNING_CERT);
  if (env.GATEWAY_ADDRESS_REGISTER) set(['routing', 'addressRegisterFile'], env.GATEWAY_ADDRESS_REGISTER);
  if (env.GATEWAY_POSTCODE_INDEX) set(['routing', 'postcodeIndexFile'], env.GATEWAY_POSTCODE_INDEX);
  if (env.GATEWAY_ROUTE_BY_BYDEL)
    set(['routing', 'routeByBydel'], env.GATEWAY_ROUTE_BY_BYDEL.split(',').map((s) => s.trim()).filter(Boolean));
  if (env.GATEWAY_OWN_HER_ID) set(['ownHerId'], env.GATEWAY_OWN_HER_ID);
  if (env.GATEWAY_LOG_LEVEL) set(['logLevel'], env.GATEWAY_LOG_LEVEL);
  if (env.GATEWAY_PATIENT_KEY_SECRET) set(['tracking', 'patientKeySecret'], env.GATEWAY_PATIENT_KEY_SECRET);
  return c;
}

const FILE_KEYS: [string, string][] = [
  ['signing', 'keyFile'],
  ['signing', 'certFile'],
  ['routing', 'addressRegisterFile'],
  ['routing', 'postcodeIndexFile'],
  ['routing', 'overridesFile'],
];

export type ConfigLoad = { ok: true; config: GatewayConfig } | { ok: false; problems: string[] };

/**
 * Reads and validates the configuration. Relative paths in the JSON file are resolved
 * against the working directory (as in every example in the README), so that the same
 * config works from `npm start` and from the container.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): ConfigLoad {
  const file = resolve(env.GATEWAY_CONFIG ?? 'config/default.json');
  let raw: Record<string, any>;
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
  for (const [section, key] of FILE_KEYS) {
    const obj = (config as any)[section];
    if (obj[key]) obj[key] = resolve(obj[key]);
  }
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
