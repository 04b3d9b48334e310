export { freePort, isListening as isPortListening } from '../../src/dev/ports.js';
