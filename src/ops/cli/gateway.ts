// `start` and `config check`.
import type { Command } from 'commander';
import { checkConfigFiles, checkOnline } from '../../config/check.js';
import { durationMs } from '../../config/config.js';
import { EVENTS } from '../../observability/events.js';
import { createLogger } from '../../observability/log.js';
import { configOrExit } from './common.js';

export function registerGatewayCommands(program: Command): void {
  program
    .command('start')
    .description('run the gateway: consume epj.outbound, route, sign and deliver')
    .action(async () => {
      const config = configOrExit();
      const log = createLogger(config.logLevel);
      const { Gateway } = await import('../../gateway.js'); // lazily: other commands must not need the schemas
      const gateway = new Gateway(config, log);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'shutting down');
        // what is not finished by then is still unacked (the broker redelivers it) or in the outbox
        const graceMs = durationMs(config.shutdownGrace);
        setTimeout(() => {
          log.error({ event: EVENTS.shutdownGraceExceeded, graceMs }, 'shutdown did not finish within the grace period: exiting anyway');
          process.exit(1);
        }, graceMs);
        gateway.stop().then(
          () => process.exit(0),
          (e) => {
            log.error({ err: (e as Error).message }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      await gateway.start();
    });

  program
    .command('config')
    .description('configuration tools')
    .command('check')
    .description('validate the configuration file and environment; prints every problem on its own line')
    .option('--online', 'also reach the services the configuration names (the address register)')
    .action(async (o: { online?: boolean }) => {
      const config = configOrExit();
      const problems = checkConfigFiles(config);
      if (o.online) problems.push(...(await checkOnline(config)));
      if (problems.length > 0) {
        for (const p of problems) console.error(p);
        process.exit(1);
      }
      console.log(`configuration OK (${process.env.GATEWAY_CONFIG ?? 'config/default.json'}; database ${config.database.url.split(':')[0]})`);
    });
}
