#!/usr/bin/env node
// The `plo-gateway` command (DESIGN §4.1). Exit codes: 0 ok, 1 failure, 2 usage.
// Each command group lives in src/ops/cli/<group>.ts and registers itself here.
import { Command, CommanderError } from 'commander';
import { registerDlqCommands } from './ops/cli/dlq.js';
import { registerGatewayCommands } from './ops/cli/gateway.js';
import { registerMessageCommands } from './ops/cli/messages.js';
import { addPendingCommand } from './ops/cli/pending.js';
import { registerRegisterCommands } from './ops/cli/register.js';
import { registerReportCommands } from './ops/cli/report.js';
import { registerRouteCommands } from './ops/cli/route.js';
import { registerRoutingCommands } from './ops/cli/routing.js';
import { registerUserCommands } from './ops/cli/users.js';

const program = new Command().name('plo-gateway').description("PLO gateway between the hospital EPJ and Oslo's bydeler over Norsk helsenett").exitOverride();

registerGatewayCommands(program);
registerDlqCommands(program);
registerRouteCommands(program);
addPendingCommand(registerMessageCommands(program));
registerReportCommands(program);
registerRoutingCommands(program);
registerRegisterCommands(program);
registerUserCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  console.error((e as Error).message);
  process.exit(1);
}
