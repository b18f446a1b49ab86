#!/usr/bin/env node
// The `plo-gateway` command (DESIGN §4.1). Exit codes: 0 ok, 1 failure, 2 usage.
import { Command, CommanderError } from 'commander';
import { checkConfigFiles } from './config/check.js';
import { loadConfig } from './config/config.js';
import { createLogger } from './observability/log.js';

function configOrExit() {
  const loaded = loadConfig();
  if (!loaded.ok) {
    for (const p of loaded.problems) console.error(p);
    process.exit(1);
  }
  return loaded.config;
}

const program = new Command()
  .name('plo-gateway')
  .description('PLO gateway between the hospital EPJ and Oslo\'s bydeler over Norsk helsenett')
  .exitOverride();

program
  .command('start')
  .description('run the gateway: consume epj.outbound, route, sign and deliver')
  .action(async () => {
    const config = configOrExit();
    const log = createLogger(config.logLevel);
    const { Gateway } = await import('./gateway.js'); // loaded lazily: `config check` must not need the schemas
    const gateway = new Gateway(config, log);
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
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

const configCmd = program.command('config').description('configuration tools');
configCmd
  .command('check')
  .description('validate the configuration file and environment; prints every problem on its own line')
  .action(() => {
    const config = configOrExit();
    const problems = checkConfigFiles(config);
    if (problems.length > 0) {
      for (const p of problems) console.error(p);
      process.exit(1);
    }
    console.log(`configuration OK (${process.env.GATEWAY_CONFIG ?? 'config/default.json'}; database ${config.database.url.split(':')[0]})`);
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  console.error((e as Error).message);
  process.exit(1);
}
