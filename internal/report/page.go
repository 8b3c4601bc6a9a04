package report

// pageHTML is the report page. Everything it needs is inline: no scripts,
// fonts, stylesheets or images are fetched, so it opens offline and leaks
// nothing about the investigation to third parties.
const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{{.Title}}</title>
<style>
:root{--fg:#1d2733;--muted:#5b6b7d;--line:#dde3ea;--bg:#f5f7fa;--card:#fff;--crit:#7b1020;--high:#c0392b;--med:#d68910;--low:#2e86c1;--info:#7f8c8d}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#14202e;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px;font-weight:600}
header .sub{color:#b7c4d3;margin-top:4px}
main{padding:20px 32px;max-width:1240px}
h2{font-size:18px;margin:28px 0 10px}
h3{font-size:15px;margin:18px 0 8px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;min-width:150px}
.card .n{font-size:26px;font-weight:650}
.card .l{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.panel{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 18px;margin:12px 0}
table{border-collapse:collapse;width:100%;margin:6px 0 10px;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;overflow-wrap:anywhere}
.id{display:inline-block;max-width:100%;overflow-wrap:anywhere}
td code,.incid{white-space:nowrap}
.badge{display:inline-block;border-radius:4px;padding:1px 7px;color:#fff;font-size:12px;font-weight:600;text-transform:uppercase}
.critical{background:var(--crit)}.high{background:var(--high)}.medium{background:var(--med)}.low{background:var(--low)}.informational{background:var(--info)}
.inc h2{display:flex;gap:10px;align-items:center;margin-top:0}
.kv{display:grid;grid-template-columns:150px 1fr;gap:3px 12px;margin:8px 0}
.kv div:nth-child(odd){color:var(--muted)}
.warn{background:#fff6e5;border:1px solid #f0c36d;border-radius:6px;padding:8px 12px;margin:8px 0}
.ok{background:#eaf7ee;border:1px solid #8fd19e;border-radius:6px;padding:8px 12px;margin:8px 0}
.chart{display:block;margin:6px 0}
.chart{max-width:1100px}
.chart .pl{font-size:18px;fill:#1d2733;font-weight:600}
.chart .tk{font-size:16px;fill:#5b6b7d}
.chart .ax{stroke:#aab4c0;stroke-width:1}
.msgs{columns:2;column-gap:24px;font-size:12px;margin:4px 0 8px;padding-left:18px}
.muted{color:var(--muted)}
footer{color:var(--muted);padding:16px 32px 40px;font-size:12px}
</style>
</head>
<body>
<header>
<h1>{{.Title}}</h1>
<div class="sub">{{if .From}}Events from {{.From}} to {{.To}} · {{end}}{{.Events}} events examined · {{.AlertCount}} detections · {{len .Incidents}} incidents · vigil {{.Version}}{{if .Generated}}, generated {{.Generated}}{{end}}</div>
</header>
<main>
<div class="cards">
<div class="card"><div class="n">{{len .Incidents}}</div><div class="l">Incidents</div></div>
<div class="card"><div class="n">{{.Mailboxes}}</div><div class="l">Mailboxes read</div></div>
<div class="card"><div class="n">{{.Messages}}</div><div class="l">Messages read</div></div>
<div class="card"><div class="n">{{.Incomplete}}</div><div class="l">Incidents with incomplete evidence</div></div>
<div class="card"><div class="n">{{.AlertCount}}</div><div class="l">Detections</div></div>
</div>

{{if .Overview}}<h2>Mail reads over time</h2>
<div class="panel">{{.Overview}}</div>{{end}}

<h2>Inputs</h2>
<div class="panel">
<p>{{len .Inputs.Files}} files, {{.Inputs.Records}} records, {{.Events}} events{{if .From}}, event time {{.From}} to {{.To}}{{end}}.
{{if .Inputs.Quarantined}}<b>{{.Inputs.Quarantined}} records quarantined</b> (could not be decoded{{range $k, $v := .Inputs.Reasons}}; {{$k}}: {{$v}}{{end}}): written to <code>{{.Inputs.QuarantineFile}}</code>, copied to <code>quarantine.jsonl</code> beside this report.{{else}}No record was quarantined.{{end}}
{{if .Inputs.Late}}{{.Inputs.Late}} events arrived behind the reordering window and were judged out of order.{{end}}
{{if .Inputs.Future}}<b>{{.Inputs.Future}} events were dated more than an hour after this run</b> (a source's clock, or forged records): only their single-event rules were applied; they moved no detector's clock.{{end}}
{{with .Inputs.Damaged}}<b>{{len .}} inputs could not be read to their end</b> (listed in <code>skipped.txt</code>).{{end}}
{{with .Inputs.Skipped}}{{len .}} directory entries were skipped (listed with their reason in <code>skipped.txt</code>).{{end}}</p>
{{if .Baseline}}<p>{{.Baseline}}</p>{{end}}
{{if .FileList}}<details><summary>Files read (also in inputs.txt)</summary><ul class="mono">{{range .FileList}}<li>{{.}}</li>{{end}}</ul>{{with .MoreFiles}}<p class="muted">… and {{.}} more in inputs.txt</p>{{end}}</details>{{end}}
</div>

<h2>Detections by signal</h2>
<div class="panel">
{{if .BySignal}}<table><tr><th>Signal</th><th>What</th><th class="num">Count</th></tr>
{{range .BySignal}}<tr><td><code>{{.Signal}}</code></td><td>{{.Title}}</td><td class="num">{{.Count}}</td></tr>
{{end}}</table>{{else}}<p class="muted">No detections.</p>{{end}}
{{if .Sources}}<h3>Events by source</h3><table><tr><th>Source</th><th class="num">Events</th></tr>
{{range .Sources}}<tr><td><code>{{.Signal}}</code></td><td class="num">{{.Count}}</td></tr>{{end}}</table>{{end}}
</div>

<h2>Incidents</h2>
{{if not .Incidents}}{{if .UrgentOut}}<div class="panel warn">No incidents, but <b>{{.UrgentOut}} high or critical detections</b> outside incidents need review (see "Detections outside incidents").</div>{{else}}<div class="panel ok">No incidents: no detection met the incident criterion (a token or session no sign-in issued with something else unfamiliar, or two different signals on one mailbox within the window).</div>{{end}}{{end}}
{{range .Incidents}}
<section class="panel inc" id="{{.ID}}">
<h2><span class="badge {{.Severity}}">{{.Severity}}</span> <span class="incid">{{.ID}}</span> <span class="muted">{{.Title}}</span></h2>
<div class="kv">
<div>First seen</div><div>{{t .FirstSeen}}</div>
<div>Last seen</div><div>{{t .LastSeen}}</div>
<div>Raised (event time)</div><div>{{t .Raised}}</div>
<div>Score</div><div><b>{{.Score}}</b> / 100</div>
<div>Signals</div><div>{{range $i, $s := .Signals}}{{if $i}}, {{end}}{{sig $s}}{{end}}</div>
<div>ATT&amp;CK</div><div>{{join .Tags ", "}}</div>
<div>Mailboxes alerted</div><div>{{template "ids" .Mailboxes}}</div>
{{if .ClientApps}}<div>Client apps</div><div>{{template "ids" .ClientApps}}</div>{{end}}
{{if .Apps}}<div>Apps</div><div>{{template "ids" .Apps}}</div>{{end}}
{{if .IPs}}<div>IP addresses</div><div>{{template "ids" .IPs}}</div>{{end}}
{{if .Sessions}}<div>Sessions</div><div>{{template "ids" .Sessions}}{{with .MoreSessions}} … and {{.}} more{{end}}</div>{{end}}
{{if .Tokens}}<div>Tokens</div><div>{{template "ids" .Tokens}}{{with .MoreTokens}} … and {{.}} more{{end}}</div>{{end}}
{{if .Users}}<div>Accounts</div><div>{{template "ids" .Users}}</div>{{end}}
</div>

<h3>Why this is an incident</h3>
<p>{{.Confidence}}</p>
<table><tr><th>Signal</th><th>Level</th><th class="num">Alerts</th><th>Seen</th><th>What it means</th><th>What would make it benign</th><th class="num">Points</th></tr>
{{range .Reasons}}<tr><td><code>{{.Signal}}</code></td><td><span class="badge {{.Level}}">{{.Level}}</span></td><td class="num">{{.Count}}</td><td>{{.Evidence}}</td><td>{{.Means}}{{if not .Counts}} <span class="muted">(context only)</span>{{end}}</td><td>{{.Benign}}</td><td class="num">{{.Points}}</td></tr>
{{end}}</table>

<h3>Impact</h3>
{{with .Impact}}
<p><b>{{.MessageCount}}</b> messages in <b>{{len .Mailboxes}}</b> mailboxes and {{.FolderCount}} folders, from {{.Accesses}} mail-access records{{if .FirstAccess}}, {{tp .FirstAccess}} to {{tp .LastAccess}}{{end}}.</p>
{{if .EvidenceComplete}}<div class="ok">Evidence complete: every read is itemised in the audit log.</div>
{{else}}<div class="warn"><b>Evidence incomplete</b> — assume more was read than is listed:<ul>{{range .IncompleteReasons}}<li>{{.}}</li>{{end}}</ul></div>{{end}}
{{end}}
{{.Chart}}
{{$inc := .Incident}}
{{range .Impact.PerMailbox}}
<h3>{{.Mailbox}} <span class="muted">— {{.MessageCount}} messages, {{.Accesses}} records, {{t .FirstAccess}} to {{t .LastAccess}}{{if .Throttled}}, throttled{{end}}</span></h3>
<table><tr><th>Folder</th><th class="num">Messages</th><th>Exposure</th><th>First access</th><th>Last access</th></tr>
{{range .Folders}}<tr><td>{{folder .Path}}</td><td class="num">{{.MessageCount}}</td><td>{{if .SyncExposed}}<b>whole folder (Sync)</b>{{else}}itemised{{end}}</td><td>{{t .FirstAccess}}</td><td>{{t .LastAccess}}</td></tr>
{{end}}</table>
{{$msgs := mbmsgs $inc .Mailbox}}{{if $msgs}}<details><summary>InternetMessageIds read ({{len $msgs}})</summary><ul class="msgs mono">{{range firstN $msgs $.MaxMessages}}<li>{{.}}</li>{{end}}</ul>{{with more $msgs $.MaxMessages}}<p class="muted">… and {{.}} more in impact.csv</p>{{end}}</details>{{end}}
{{end}}

<h3>Timeline</h3>
<table><tr><th>First</th><th>Last</th><th>Signal</th><th>Level</th><th>What</th><th>Mailbox</th><th class="num">Alerts</th></tr>
{{range .Timeline}}<tr><td>{{t .First}}</td><td>{{if ne .Count 1}}{{t .Last}}{{end}}</td><td><code>{{.Signal}}</code></td><td><span class="badge {{.Level}}">{{.Level}}</span></td><td>{{.Title}}</td><td>{{.Mailbox}}</td><td class="num">{{.Count}}</td></tr>
{{end}}</table>
</section>
{{end}}

{{if .Outside}}<h2>Detections outside incidents</h2>
{{range .Outside}}<section class="panel">
<h3><span class="badge {{.Level}}">{{.Level}}</span> <code>{{.Signal}}</code> {{.Title}} <span class="muted">— {{.Count}} detections, {{t .First}} to {{t .Last}}</span></h3>
<div class="kv">
<div>Users / mailboxes</div><div>{{join .Users ", "}}{{with .MoreUsers}} … and {{.}} more{{end}}</div>
{{if .Values}}<div>Key values</div><div class="mono">{{join .Values ", "}}</div>{{end}}
</div>
<table><tr><th>Time</th><th>Level</th><th>User</th><th>Mailbox</th><th>What</th><th>IP</th><th>Record</th></tr>
{{range .Rows}}<tr><td>{{t .Time}}</td><td>{{.Level}}</td><td>{{.User}}</td><td>{{.Mailbox}}</td><td>{{.Title}}</td><td><code>{{if .IP}}{{.IP}}{{else}}{{index .Fields "src_ip"}}{{end}}</code></td><td><code>{{.RecordID}}</code></td></tr>
{{end}}</table>{{if gt .Count (len .Rows)}}<p class="muted">First {{len .Rows}} of {{.Count}}; every detection is in detections.jsonl.</p>{{end}}
</section>{{end}}{{end}}

{{if .Posture}}<h2>Logging coverage and posture</h2>
<div class="panel"><table><tr><th>Time</th><th>Level</th><th>What</th><th>Mailbox / source</th></tr>
{{range .Posture}}<tr><td>{{t .Time}}</td><td><span class="badge {{.Level}}">{{.Level}}</span></td><td>{{.Title}}</td><td>{{if .Mailbox}}{{.Mailbox}}{{else}}{{.Source}}{{end}}</td></tr>
{{end}}</table></div>{{end}}
</main>
<footer>Generated by vigil {{.Version}}{{if .Generated}} at {{.Generated}}{{end}}. Inputs: inputs.txt{{if .Inputs.Quarantined}} · quarantined records: quarantine.jsonl{{end}} · detections: detections.jsonl · incidents and impact: incidents.json · one row per message read: impact.csv.</footer>
</body>
</html>
{{define "ids"}}{{range $i, $v := .}}{{if $i}}, {{end}}<span class="id"><code>{{$v.Value}}</code>{{with $v.Note}} <span class="muted">{{.}}</span>{{end}}</span>{{end}}{{end}}
`
