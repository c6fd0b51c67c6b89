#!/usr/bin/env node
/**
 * vmdn command line. Each command: parse, call the library, render as a table
 * or (--json) as one JSON document on stdout. Errors go through reportError.
 */
import { program } from './program.js';
import { reportError } from './output.js';
import { registerStoreCommands } from './commands/store.js';
import { registerInspectCommands } from './commands/inspect.js';
import { registerNetCommands } from './commands/net.js';

registerStoreCommands(program);
registerNetCommands(program);
registerInspectCommands(program);

program.parseAsync(process.argv).catch((err) => {
  process.exitCode = reportError(err, process.argv.includes('--json'));
});
