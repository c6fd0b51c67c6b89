#!/usr/bin/env node
/**
 * vmdn command line. Each command: parse, call the library, render as a table
 * or (--json) as one JSON document on stdout. Errors go through reportError.
 */
import { program } from './program.js';
import { exitWhenFlushed, reportError } from './output.js';
import { registerStoreCommands } from './commands/store.js';
import { registerInspectCommands } from './commands/inspect.js';
import { registerNetCommands } from './commands/net.js';
import { registerNbdCommands } from './commands/nbd.js';
import { registerBootCommands } from './commands/boot.js';
import { registerKeyCommands } from './commands/key.js';
import { registerTokenCommands } from './commands/token.js';

registerStoreCommands(program);
registerNetCommands(program);
registerNbdCommands(program);
registerBootCommands(program);
registerTokenCommands(program);
registerInspectCommands(program);
registerKeyCommands(program);

// Exit explicitly once the command is done: after a failure, work still in flight
// (downloads, codec workers, keep-alive sockets) must not keep the process alive.
program
  .parseAsync(process.argv)
  .catch((err) => {
    process.exitCode = reportError(err, process.argv.includes('--json'));
  })
  .finally(exitWhenFlushed);
