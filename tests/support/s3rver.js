// Runs s3rver (npm) on 127.0.0.1 on a free port and prints the port once it listens.
//   node s3rver.js NODE_MODULES_DIR DATA_DIR
// s3rver knows one access key id, S3RVER, and refuses others (InvalidAccessKeyId); it does not
// check SigV4 signatures. The test suite's key ids are added to its dummy account here.
// serviceEndpoint "localhost" makes BUCKET.s3.localhost virtual-hosted requests name the bucket.
'use strict';
const path = require('path');
const [modules, directory] = process.argv.slice(2);
const S3rver = require(path.join(modules, 's3rver'));
const { DUMMY_ACCOUNT } = require(path.join(modules, 's3rver/lib/models/account'));
for (const id of ['AKIDTESTWALSHIP', 'test']) DUMMY_ACCOUNT.createKeyPair(id, 'unused');
new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true, serviceEndpoint: 'localhost' })
  .run()
  .then(({ port }) => console.log(port))
  .catch(err => { console.error(err); process.exit(1); });
