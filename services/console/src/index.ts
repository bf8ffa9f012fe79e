export { startConsoleService, type ConsoleServiceOptions, type RunningConsole } from './server.js';
export { html, escapeHtml, SafeHtml } from './html.js';
