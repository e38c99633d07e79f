// Medplum's MLLP server as the HL7 benchmark's peer: parses each message and answers AA from
// memory (nothing stored). Prints "listening PORT" once ready; stops on SIGTERM.
'use strict';
const { Hl7Server } = require('@medplum/hl7');

async function main() {
  const port = Number(process.argv[2] || 0);
  const server = new Hl7Server((connection) => {
    connection.addEventListener('message', ({ message }) => {
      connection.send(message.buildAck());
    });
  });
  await server.start(port);
  console.log(`listening ${server.server.address().port}`);
  process.on('SIGTERM', () => process.exit(0));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
