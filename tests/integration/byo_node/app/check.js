// The operator's health check, run by plantstage as a command probe: `node check.js PORT`.
// Exit 0 when the app answers /healthz; prints the build it reports (the version regex reads it).
fetch(`http://127.0.0.1:${process.argv[2]}/healthz`).then((r) => {
  if (r.status !== 200) { console.error(`healthz answered ${r.status}`); process.exit(1); }
  console.log(`pickd build ${r.headers.get('x-build')} on ${process.env.APP_DB ? 'its database' : 'no database'}`);
}, (e) => { console.error(`Error: ${e.cause ? e.cause.code : e.message}`); process.exit(1); });
