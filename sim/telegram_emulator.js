// Launch telegram-test-api 4.2.1 with the small fixes python-telegram-bot 22 needs.
// usage: node emulator.js <port>   (NODE_PATH = the folder holding node_modules/telegram-test-api)
// Fixes, all in the JSON answers (the package's routes are untouched):
//  - getMe carries is_bot; message dates are seconds, not milliseconds;
//  - callback queries carry chat_instance; users carry is_bot/first_name;
//  - editMessageText/editMessageReplyMarkup return the edited message instead of null;
//  - sendDocument/sendPhoto exist (stored like text messages with the caption).
'use strict';
const sendResultModule = require('telegram-test-api/lib/modules/sendResult');
const original = sendResultModule.sendResult;
let server = null;

function fix(node, key) {
  if (Array.isArray(node)) return node.map((x) => fix(x));
  if (node && typeof node === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(node)) out[k] = fix(v, k);
    if ((key === 'from' || key === 'user') && out.id !== undefined) {
      if (out.is_bot === undefined) out.is_bot = false;
      if (out.first_name === undefined) out.first_name = 'User';
    }
    if (key === 'chat' && out.id !== undefined && out.type === undefined) out.type = 'private';
    if (key === 'callback_query' && out.chat_instance === undefined) out.chat_instance = '1';
    if (typeof out.date === 'number' && out.date > 1e11) out.date = Math.floor(out.date / 1000);
    return out;
  }
  return node;
}

sendResultModule.sendResult = (req, res, next) => {
  original(req, res, () => {
    const json = res.json.bind(res);
    res.json = (body) => {
      if (body && body.ok && body.result && typeof body.result === 'object' && /\/getMe$/.test(req.path)) {
        body.result.is_bot = true;
      }
      if (body && body.ok && body.result === null && /\/edit(MessageText|MessageReplyMarkup)$/.test(req.path)) {
        const id = String(req.body.message_id);
        const stored = server.storage.botMessages.find((u) => String(u.messageId) === id);
        if (stored) {
          body.result = { ...stored.message, message_id: stored.messageId, date: stored.time,
            chat: { id: Number(stored.message.chat_id), type: 'private', first_name: 'Bot' } };
          if (req.body.text) body.result.text = req.body.text;
          if (req.body.reply_markup) {
            body.result.reply_markup = typeof req.body.reply_markup === 'string'
              ? JSON.parse(req.body.reply_markup) : req.body.reply_markup;
          }
        } else {
          body.result = true;
        }
      }
      return json(fix(body));
    };
    next();
  });
};

const routes = require('telegram-test-api/lib/routes/index');
for (const method of ['sendDocument', 'sendPhoto']) {
  // file_id/URL sends (JSON or urlencoded); multipart uploads are not parsed by this emulator
  routes.routes.unshift((app, srv) => app.post(`/bot:token/${method}`, (req, res) => {
    const body = { ...req.body, text: req.body.caption || `[${method}]` };
    res.sendResult({ ok: true, result: srv.addBotMessage(body, req.params.token) });
  }));
}
// files: a test registers a local file under a file_id; getFile and the file URL serve it
const files = {};
routes.routes.unshift((app) => {
  app.post('/testFile', (req, res) => { files[req.body.file_id] = req.body.path; res.json({ ok: true }); });
  app.all('/bot:token/getFile', (req, res) => {
    const id = req.body.file_id || req.query.file_id;
    if (!files[id]) { res.status(400).json({ ok: false, error_code: 400, description: 'Bad Request: invalid file_id' }); return; }
    res.json({ ok: true, result: { file_id: id, file_unique_id: id, file_path: `voice/${id}.oga` } });
  });
  app.get('/file/bot:token/voice/:name', (req, res) => {
    const id = req.params.name.replace(/\.oga$/, '');
    if (!files[id]) { res.status(404).end(); return; }
    res.sendFile(files[id]);
  });
});
const { TelegramServer } = require('telegram-test-api/lib/telegramServer');
const port = Number(process.argv[2] || 9000);
server = new TelegramServer({ port, host: '127.0.0.1', storeTimeout: 600 });
server.start().then(() => { process.stdout.write(`ready ${port}\n`); });
process.on('SIGTERM', () => server.stop().then(() => process.exit(0)));
