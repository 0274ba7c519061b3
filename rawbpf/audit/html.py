"""The joined report as one self-contained HTML page; pure.

Everything is inline: the report's JSON, the CSS and a small script that draws the timeline and the
collapsible process trees (children are built when a node is first opened, so a session of thousands of
processes still opens at once). A Content-Security-Policy forbids every fetch, so the page can be mailed or
copied to another machine and opened offline. The script marks ``<body data-rendered="1">`` once drawn.
"""

from __future__ import annotations

import html
import json
from typing import Any, Dict, Optional

__tier__ = "pure"

__all__ = ["render_html"]

_CSS = r"""
:root{--bg:#fbfbfa;--fg:#1d1f21;--mute:#6a6f75;--line:#e2e4e6;--card:#fff;--tool:#2f6fd6;--claude:#8a5cd1;
--hook:#c27c0e;--mcp:#0f8f7a;--bad:#c9362b;--warn:#c27c0e;--ok:#2e8b57;--info:#5b6b7b}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg)}
header{padding:18px 28px;background:#1f2430;color:#eef}header h1{margin:0 0 4px;font-size:19px;font-weight:600}
header .meta{color:#b8bfcc;font-size:13px}header .meta span{margin-right:18px}
main{padding:18px 28px;max-width:1400px}section{margin-bottom:26px}h2{font-size:16px;margin:0 0 10px;font-weight:600}
.counts{display:flex;gap:10px;flex-wrap:wrap;margin-bottom:18px}.count{background:var(--card);border:1px solid var(--line);
border-radius:8px;padding:8px 14px;min-width:110px}.count b{display:block;font-size:20px}.count small{color:var(--mute)}
.finding{display:flex;gap:10px;align-items:baseline;padding:6px 10px;border-left:4px solid var(--info);background:var(--card);
margin-bottom:4px;border-radius:0 6px 6px 0}.finding.high{border-color:var(--bad)}.finding.medium{border-color:var(--warn)}
.finding.low{border-color:#9aa5b1}.sev{font-size:11px;font-weight:700;letter-spacing:.04em;width:60px;flex:none}
.high .sev{color:var(--bad)}.medium .sev{color:var(--warn)}.low .sev,.info .sev{color:var(--mute)}
.timeline{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.trow{display:flex;align-items:center;height:20px;font-size:12px}.tlabel{width:280px;flex:none;overflow:hidden;
white-space:nowrap;text-overflow:ellipsis;color:var(--mute);padding-right:8px}.ttrack{position:relative;flex:1;height:12px;
background:#f1f2f4;border-radius:3px}.tbar{position:absolute;top:0;height:12px;min-width:3px;border-radius:3px;background:var(--tool)}
.tbar.claude{background:var(--claude)}.tbar.hook{background:var(--hook)}.tbar.mcp{background:var(--mcp)}.tbar.fail{background:var(--bad)}
.taxis{display:flex;justify-content:space-between;margin-left:280px;color:var(--mute);font-size:11px}
.prompt{margin:14px 0 6px;padding:8px 12px;background:#eef2f8;border-radius:6px;white-space:pre-wrap}
.prompt .when{color:var(--mute);font-size:12px;margin-right:8px}
.call{background:var(--card);border:1px solid var(--line);border-radius:8px;margin:6px 0 6px 18px}
.chead{display:flex;gap:10px;align-items:baseline;padding:7px 10px;cursor:pointer;user-select:none}
.chead:hover{background:#f6f7f9}.tool{font-weight:600;color:var(--tool);flex:none}.target{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:12.5px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;flex:1}.tag{font-size:11px;color:var(--mute);flex:none}
.err{color:var(--bad);font-weight:600}.cbody{padding:4px 10px 10px 28px;border-top:1px solid var(--line)}
.cbody[hidden],.kids[hidden]{display:none}.node{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
.nline{display:flex;gap:8px;align-items:baseline;padding:1px 0}.tw{width:16px;flex:none;border:0;background:none;cursor:pointer;
color:var(--mute);padding:0;font:inherit}.tw[disabled]{cursor:default;visibility:hidden}.pid{color:var(--mute);width:62px;
text-align:right;flex:none}.cmd{white-space:pre-wrap;word-break:break-all}.st{color:var(--ok);flex:none}.st.bad{color:var(--bad)}
.st.run{color:var(--warn)}.kids{margin-left:18px;border-left:1px dashed var(--line);padding-left:6px}
.detail{margin-left:96px;color:#3d4248;font-size:12px}.detail.sens{color:var(--bad)}.o-claude .cmd{color:var(--claude)}
.o-hook .cmd{color:var(--hook)}.o-mcp .cmd{color:var(--mcp)}.muted{color:var(--mute)}
button.all{font:inherit;font-size:12px;padding:3px 10px;border:1px solid var(--line);background:var(--card);border-radius:5px;cursor:pointer}
table.small{border-collapse:collapse;font-size:12.5px}table.small td{padding:2px 12px 2px 0;vertical-align:top}
.call,.prompt,.trow,#unexplained>.node{content-visibility:auto;contain-intrinsic-size:auto 30px}
button.more{margin-left:96px;border:0;background:none;color:var(--tool);cursor:pointer;font:inherit;font-size:12px;padding:0}
"""

_JS = r"""
(function(){
'use strict';
var R=JSON.parse(document.getElementById('report-data').textContent);
performance.mark('rawbpf-parsed');
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;if(text!=null)e.textContent=text;return e;}
function ms(ns){if(ns==null)return '-';if(ns<1e9)return (ns/1e6).toFixed(ns<1e6?1:0)+' ms';var s=ns/1e9;
 if(s<60)return s.toFixed(1)+' s';if(s<3600)return Math.floor(s/60)+' min '+Math.floor(s%60)+' s';return Math.floor(s/3600)+' h '+Math.floor(s%3600/60)+' min';}
function time(ns){if(ns==null)return '-';var d=new Date(ns/1e6);function p(n,w){return String(n).padStart(w||2,'0');}
 return p(d.getHours())+':'+p(d.getMinutes())+':'+p(d.getSeconds())+'.'+p(d.getMilliseconds(),3);}
function q(s){return /^[A-Za-z0-9_@%+=:,.\/-]+$/.test(s)?s:"'"+s.split("'").join("'\"'\"'")+"'";}
function cmd(argv){if(argv&&argv.length>=3&&/(ba)?sh$/.test(argv[0])&&argv[1]==='-c'){var m=/eval '((?:[^']|'\\'')*)'/.exec(argv[2]);
 if(m)return argv[0].split('/').pop()+' -c '+q(m[1].split("'\\''").join("'"));}
 return (argv||[]).map(function(a){return /\s/.test(a)||a===''?JSON.stringify(a):a;}).join(' ');}
function status(n){if(n.running)return ['running','run'];if(n.signal)return ['signal '+n.signal,'bad'];
 if(n.exit_code==null)return ['exited',''];return ['exit '+n.exit_code,n.exit_code?'bad':''];}
function rel(p){return S.cwd&&p&&p.indexOf(S.cwd+'/')===0?'./'+p.slice(S.cwd.length+1):p;}
function fileText(f){return f.op+' '+rel(f.path)+(f.path2?' \u2192 '+rel(f.path2):'')+(f.sensitive?'  [sensitive]':'')+(f.claude_state?"  (Claude's own)":'')+(f.count>1?'  \u00d7'+f.count:'')+
 (typeof f.ret==='number'&&f.ret<0?'  ('+(f.error||'error '+f.ret)+')':'');}
function node(n,pcwd){
 ['argv','children','files','connections','dns'].forEach(function(k){if(!n[k])n[k]=[];});
 var d=el('div','node o-'+(n.origin||'none'));d.dataset.pid=n.pid;
 var line=el('div','nline');var tw=el('button','tw',n.children.length?'\u25b8':'\u00b7');tw.type='button';
 tw.setAttribute('aria-expanded','false');if(!n.children.length)tw.disabled=true;line.appendChild(tw);
 line.appendChild(el('span','pid',String(n.pid)));line.appendChild(el('span','cmd',n.argv.length?cmd(n.argv):(n.comm||'?')+' (forked, no exec)'));
 var st=status(n);line.appendChild(el('span','st '+st[1],st[0]+(n.running?'':', '+ms(n.duration_ns))));
 if(n.children.length)line.appendChild(el('span','muted','('+n.children.length+' child'+(n.children.length>1?'ren':'')+')'));
 d.appendChild(line);
 if(n.cwd&&n.cwd!==pcwd){var c=el('div','detail muted','cwd '+n.cwd);d.appendChild(c);}
 function fileRow(f){return el('div','detail'+(f.sensitive?' sens':''),'file '+fileText(f));}
 n.files.slice(0,8).forEach(function(f){d.appendChild(fileRow(f));});
 if(n.files.length>8){var more=el('button','more','\u2026 '+(n.files.length-8)+' more file changes');more.type='button';
  more.addEventListener('click',function(ev){ev.stopPropagation();n.files.slice(8).forEach(function(f){d.insertBefore(fileRow(f),more);});more.remove();});
  d.appendChild(more);}
 n.connections.forEach(function(c){d.appendChild(el('div','detail','net  '+c.label+' '+c.result+(c.latency_ns?' '+ms(c.latency_ns):'')));});
 n.dns.forEach(function(q){d.appendChild(el('div','detail','dns  '+q.qname+' \u2192 '+((q.answers||[]).join(', ')||q.rcode)));});
 var kids=el('div','kids');kids.hidden=true;d.appendChild(kids);var built=false;
 tw.addEventListener('click',function(ev){ev.stopPropagation();if(!built){n.children.forEach(function(k){kids.appendChild(node(k,n.cwd));});built=true;}
  var open=kids.hidden;kids.hidden=!open;tw.textContent=open?'\u25be':'\u25b8';tw.setAttribute('aria-expanded',String(open));});
 return d;}
function section(title,id){var s=el('section');s.id=id;s.appendChild(el('h2',null,title));document.getElementById('main').appendChild(s);return s;}
var S=R.session,T=R.transcript,C=S.counts;
document.title='Claude session '+(S.session_id||S.root_pid);
var h=document.getElementById('head');h.appendChild(el('h1',null,'Claude session '+(S.session_id||'(id unknown)')));
var meta=el('div','meta');[['pid',S.root_pid],['claude',S.claude_version||'?'],['uid',S.uid],['host',S.host||'?'],['cwd',S.cwd||'?'],
 ['start',new Date(S.start/1e6).toLocaleString()],[S.running?'running':'duration',ms(S.duration_ns)]].forEach(function(kv){
 meta.appendChild(el('span',null,kv[0]+' '+kv[1]));});h.appendChild(meta);
var tmeta=el('div','meta');tmeta.appendChild(el('span',null,T.status==='read'?'transcript '+T.path+' (joined by '+T.join+')':
 (T.status==='unreadable'?'transcript '+T.path+': cannot read it: '+T.error:'transcript not recorded: tool calls are not shown')));h.appendChild(tmeta);
var notes=[];if(S.start_seen===false)notes.push('the log begins after this session started: what it did before is not here');
if(R.log.missing||R.log.torn)notes.push('the log is incomplete: '+(R.log.missing||0)+' record(s) rotated away, '+(R.log.torn||0)+' torn');
if(T.skipped)notes.push(T.skipped+' transcript line(s) were not JSON');
notes.forEach(function(n){var m=el('div','meta');m.appendChild(el('span','err',n));h.appendChild(m);});
var main=document.getElementById('main');var counts=el('div','counts');
[[C.commands,'commands'],[C.failed_commands,'failed'],[C.files_changed,'files changed'],[C.sensitive_reads,'sensitive reads'],
 [Object.keys(C.connections).reduce(function(a,k){return a+C.connections[k];},0),'connections'],[C.lost_records,'records lost'],[R.calls.length,'tool calls']]
 .forEach(function(x){var c=el('div','count');c.appendChild(el('b',null,String(x[0])));c.appendChild(el('small',null,x[1]));counts.appendChild(c);});
main.appendChild(counts);
var fs=section('Findings ('+R.findings.length+')','findings');
if(!R.findings.length)fs.appendChild(el('div','muted','none'));
R.findings.forEach(function(f){var d=el('div','finding '+f.severity);d.appendChild(el('span','sev',f.severity.toUpperCase()));
 d.appendChild(el('span',null,f.summary));if(f.tool_use_id)d.appendChild(el('span','tag',f.tool_use_id));fs.appendChild(d);});
// timeline
var ts=section('Timeline','timeline-section');var tl=el('div','timeline');tl.id='timeline';ts.appendChild(tl);
var t0=S.start,t1=S.end!=null?S.end:(R.log.last_ts||S.start+1);var rows=[];
R.calls.forEach(function(c){var fail=c.processes.some(function(p){return p.failed;})||c.is_error;
 rows.push({label:c.tool+' '+c.target,start:c.ts_use,end:c.ts_end!=null?c.ts_end:t1,cls:fail?'fail':'',title:c.tool_use_id});
 if(c.ts_end!=null&&c.ts_end>t1)t1=c.ts_end;});
['claude','hook','mcp','tool','unknown'].forEach(function(k){(R.unexplained.processes[k]||[]).slice(0,60).forEach(function(p){
 rows.push({label:k+': '+(cmd(p.argv)||p.comm),start:p.start,end:p.end!=null?p.end:t1,cls:k==='unknown'?'':k,title:'pid '+p.pid});});});
var span=Math.max(1,t1-t0);rows.slice(0,400).forEach(function(r){var row=el('div','trow');var l=el('div','tlabel',r.label);l.title=r.label;row.appendChild(l);
 var tr=el('div','ttrack');var b=el('div','tbar '+r.cls);var s=Math.max(0,((r.start||t0)-t0)/span),e=Math.min(1,((r.end||t1)-t0)/span);
 b.style.left=(s*100).toFixed(3)+'%';b.style.width=(Math.max(0,e-s)*100).toFixed(3)+'%';b.title=r.title+' '+ms((r.end||t1)-(r.start||t0));
 tr.appendChild(b);row.appendChild(tr);tl.appendChild(row);});
var ax=el('div','taxis');ax.appendChild(el('span',null,time(t0)));ax.appendChild(el('span',null,ms(span)));ax.appendChild(el('span',null,time(t1)));tl.appendChild(ax);
// prompts and calls
var cs=section('Prompts and tool calls','calls');var bar=el('div');var all=el('button','all','expand all');all.type='button';all.id='expand-all';bar.appendChild(all);cs.appendChild(bar);
function callBox(c){var box=el('div','call');box.dataset.toolUseId=c.tool_use_id;var head=el('div','chead');
 head.appendChild(el('span','muted',time(c.ts_use)));head.appendChild(el('span','tool',c.tool+(c.background?' (background)':'')));
 head.appendChild(el('span','target',c.target));if(c.is_error)head.appendChild(el('span','err','error'));
 head.appendChild(el('span','tag','joined by '+c.join+(c.candidates.length?' ('+c.candidates.join(', ')+')':'')));
 head.appendChild(el('span','tag',c.processes.length?c.processes.length+' process tree'+(c.processes.length>1?'s':''):(c.files.length?c.files.length+' file events':'no records')));
 var body=el('div','cbody');body.hidden=true;var built=false;
 head.addEventListener('click',function(){if(!built){body.appendChild(el('div','muted',c.tool_use_id+' \u00b7 '+ms((c.ts_end||c.ts_use)-c.ts_use)));
  c.processes.forEach(function(p){var nd=node(p,S.cwd);
  if(p.joined_by&&p.joined_by!==c.join)nd.querySelector('.nline').appendChild(el('span','tag','joined by '+p.joined_by));body.appendChild(nd);});if(!c.processes.length)c.files.forEach(function(f){body.appendChild(el('div','detail','file '+fileText(f)+'  (pid '+f.pid+')'));});
  built=true;}body.hidden=!body.hidden;});
 box.appendChild(head);box.appendChild(body);return box;}
var byPrompt={};R.calls.forEach(function(c){var k=c.prompt==null?'none':c.prompt;(byPrompt[k]=byPrompt[k]||[]).push(c);});
(byPrompt.none||[]).forEach(function(c){cs.appendChild(callBox(c));});
R.prompts.forEach(function(p){var d=el('div','prompt');d.appendChild(el('span','when',time(p.ts)+(p.kind==='task-notification'?' task notification':' prompt '+(p.index+1))));
 var txt=p.text;if(p.kind==='task-notification'){var m=/<summary>([\s\S]*?)<\/summary>/.exec(txt);if(m)txt=m[1];}
 d.appendChild(document.createTextNode(txt.length>600?txt.slice(0,600)+'\u2026':txt));cs.appendChild(d);
 (byPrompt[p.index]||[]).forEach(function(c){cs.appendChild(callBox(c));});});
if(!R.calls.length)cs.appendChild(el('div','muted','no tool calls (no transcript)'));
all.addEventListener('click',function(){document.querySelectorAll('.cbody').forEach(function(b){if(b.hidden)b.previousSibling.click();});
 var n=0;document.querySelectorAll('#calls .tw[aria-expanded="false"]:not([disabled])').forEach(function(t){if(n++<2000)t.click();});});
// not explained
var us=section('Not explained by a tool call','unexplained');var U=R.unexplained;
var names={claude:'Claude Code itself',hook:'Hooks',mcp:'MCP servers',tool:'Tool commands with no matching call',unknown:'Other processes'};
['claude','hook','mcp','tool','unknown'].forEach(function(k){var list=U.processes[k];if(!list||!list.length)return;
 us.appendChild(el('h3',null,names[k]));list.forEach(function(p){us.appendChild(node(p,S.cwd));});});
if(U.connections.length){us.appendChild(el('h3',null,'Connections'));var g={};U.connections.forEach(function(c){var k=c.label+' '+c.result;g[k]=(g[k]||0)+1;});
 Object.keys(g).forEach(function(k){us.appendChild(el('div','detail',k+(g[k]>1?' \u00d7'+g[k]:'')));});}
if(U.files.length){us.appendChild(el('h3',null,'Files ('+U.files.length+')'));U.files.slice(0,500).forEach(function(f){us.appendChild(el('div','detail'+(f.sensitive?' sens':''),fileText(f)+'  (pid '+f.pid+')'));});}
if(U.outlived.length){us.appendChild(el('h3',null,'Outlived the session'));U.outlived.forEach(function(o){
 us.appendChild(el('div','detail',o.pid+' '+(cmd(o.argv)||o.comm)+(o.running?' still running '+ms(o.after_ns)+' after Claude exited':' ran '+ms(o.after_ns)+' longer')));});}
us.appendChild(el('div','detail muted','records lost in the session\u2019s window: '+U.lost_records));
performance.mark('rawbpf-drawn');
document.body.dataset.rendered='1';
})();
"""


def _embed(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # nothing in the data may end the script element or enter the HTML parser's escaped states: '<' only
    # occurs inside JSON strings, where \u003c reads back as the same character
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace(
        "\u2028", "\\u2028").replace("\u2029", "\\u2029")


_NODE = ("pid", "comm", "argv", "cwd", "origin", "start", "end", "duration_ns", "running", "exit_code", "signal",
         "failed", "joined_by")
_FILE = ("op", "path", "path2", "ret", "error", "count", "sensitive", "pid", "claude_state")


def _empty(v: Any) -> bool:
    return v is None or v is False or (isinstance(v, (list, str)) and not v)  # 0 is a value (exit 0)


def _slim(node: Dict[str, Any], parent_cwd: Optional[str]) -> Dict[str, Any]:
    """A process as the page draws it: only the fields it shows, empty ones left out (the script defaults
    them), and its cwd only where it differs from its parent's."""
    out = {k: node[k] for k in _NODE if not _empty(node.get(k))}
    if node.get("cwd") == parent_cwd:
        out.pop("cwd", None)
    if node["files"]:
        out["files"] = [{k: f[k] for k in _FILE if not _empty(f.get(k))} for f in node["files"]]
    if node["connections"]:
        out["connections"] = [{k: c.get(k) for k in ("label", "result", "latency_ns")} for c in node["connections"]]
    if node["dns"]:
        out["dns"] = [{k: d.get(k) for k in ("qname", "answers", "rcode")} for d in node["dns"]]
    if node["children"]:
        out["children"] = [_slim(ch, node.get("cwd")) for ch in node["children"]]
    return out


def _page_data(report: Dict[str, Any]) -> Dict[str, Any]:
    """The report without what the page does not draw: a call's files, connections and lookups are already
    under its processes (kept for Write/Edit calls, which have none), its full input is in ``target``, and
    processes carry only what is shown (a session of 100 k records makes a page of a few MB)."""
    cwd = report["session"].get("cwd")
    calls = []
    for c in report["calls"]:
        c = dict(c)
        c.pop("input", None)
        if c["processes"]:
            c["files"], c["connections"], c["dns"] = [], [], []
        c["processes"] = [_slim(p, cwd) for p in c["processes"]]
        calls.append(c)
    u = dict(report["unexplained"])
    u["processes"] = {k: [_slim(p, cwd) for p in v] for k, v in u["processes"].items()}
    return dict(report, calls=calls, unexplained=u, root=_slim(report["root"], None))


def render_html(report: Dict[str, Any]) -> str:
    """One self-contained HTML page for a :func:`rawbpf.audit.join.build_report` result."""
    s = report["session"]
    title = html.escape(f"Claude session {s.get('session_id') or s.get('root_pid')}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{title}</title><style>{_CSS}</style></head>\n<body><header id=\"head\"></header>"
        "<main id=\"main\"><noscript>This page draws the report with JavaScript; the same data is in "
        "<code>rawbpf report --json</code>.</noscript></main>\n"
        f"<script type=\"application/json\" id=\"report-data\">{_embed(_page_data(report))}</script>\n"
        f"<script>{_JS}</script></body></html>\n"
    )
