// The official Node.js SDKs (@alicloud/fc20230330, @alicloud/mns) against the emulator, unchanged but for the
// endpoint. Run by tests/emulator/test_node_sdk.py: one JSON line per operation, {"op", "ok", "detail"|"error"}.
'use strict';

const { Readable } = require('stream');
const FC = require('@alicloud/fc20230330');
const { $OpenApiUtil } = require('@alicloud/openapi-core');
const $dara = require('@darabonba/typescript');
const MnsClient = require('@alicloud/mns');

const env = JSON.parse(process.env.CONFORMANCE);
const results = [];

function report(op, ok, detail) {
  const line = { op, ok, detail };
  results.push(line);
  process.stdout.write(JSON.stringify(line) + '\n');
}

async function check(op, fn) {
  try {
    const detail = await fn();
    report(op, true, detail === undefined ? null : detail);
    return detail;
  } catch (err) {
    report(op, false, String((err && (err.stack || err.message)) || err));
    return undefined;
  }
}

function expect(cond, message) {
  if (!cond) {
    throw new Error(message);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function fcSuite() {
  const fc = new FC.default(new $OpenApiUtil.Config({
    accessKeyId: env.accessKeyId,
    accessKeySecret: env.accessKeySecret,
    endpoint: env.endpoint.split('://')[1],
    protocol: 'http',
    regionId: env.region,
  }));
  const runtime = new $dara.RuntimeOptions({});
  const invoke = (fn, body, taskId) => fc.invokeFunctionWithOptions(
    fn,
    new FC.InvokeFunctionRequest({ body: Readable.from([Buffer.from(body)]), qualifier: 'LATEST' }),
    new FC.InvokeFunctionHeaders({ xFcInvocationType: 'Async', xFcAsyncTaskId: taskId }),
    runtime,
  );
  const getTask = (fn, id) => fc.getAsyncTask(fn, id, new FC.GetAsyncTaskRequest({ qualifier: 'LATEST' }));
  async function waitTask(fn, id, wanted) {
    for (let i = 0; i < 400; i++) {
      const task = (await getTask(fn, id)).body;
      if (wanted.includes(task.status)) {
        return task;
      }
      await sleep(100);
    }
    throw new Error(`task ${id} never reached ${wanted}`);
  }
  const prefix = env.prefix;
  const okId = `${prefix}-ok`;
  const failId = `${prefix}-fail`;
  const stopId = `${prefix}-stop`;

  await check('InvokeFunction (Async, x-fc-async-task-id)', async () => {
    const res = await invoke('echo', JSON.stringify({ from: 'node' }), okId);
    expect(res.statusCode === 202, `status ${res.statusCode}`);
    expect(res.headers['x-fc-async-task-id'] === okId, `task id header ${res.headers['x-fc-async-task-id']}`);
    expect(res.headers['x-fc-request-id'], 'no x-fc-request-id');
    return { requestId: res.headers['x-fc-request-id'] };
  });
  await check('InvokeFunction (Async, reused task id: 409)', async () => {
    try {
      await invoke('echo', '{}', okId);
    } catch (err) {
      expect(err.statusCode === 409, `status ${err.statusCode}: ${err.message}`);
      return { code: err.code };
    }
    throw new Error('a reused task id was accepted');
  });
  await check('GetAsyncTask (Succeeded, returnPayload)', async () => {
    const task = await waitTask('echo', okId, ['Succeeded', 'Failed']);
    expect(task.status === 'Succeeded', `status ${task.status}`);
    expect(JSON.parse(task.returnPayload).from === 'node', `returnPayload ${task.returnPayload}`);
    expect(task.taskId === okId && task.functionArn && task.requestId && task.startedTime > 0, 'fields');
    expect(Array.isArray(task.events) && task.events.length > 0, 'events');
    return { status: task.status, events: task.events.map((e) => e.status) };
  });
  await check('GetAsyncTask (Failed, taskErrorMessage)', async () => {
    await invoke('failer', '{}', failId);
    const task = await waitTask('failer', failId, ['Succeeded', 'Failed']);
    expect(task.status === 'Failed', `status ${task.status}`);
    expect(task.taskErrorMessage, 'no taskErrorMessage');
    return { taskErrorMessage: task.taskErrorMessage, alreadyRetriedTimes: task.alreadyRetriedTimes };
  });
  await check('StopAsyncTask', async () => {
    await invoke('sleeper', JSON.stringify({ seconds: 30 }), stopId);
    await waitTask('sleeper', stopId, ['Running']);
    const res = await fc.stopAsyncTask('sleeper', stopId, new FC.StopAsyncTaskRequest({ qualifier: 'LATEST' }));
    expect(res.statusCode === 200, `status ${res.statusCode}`);
    const task = await waitTask('sleeper', stopId, ['Stopped']);
    return { status: task.status };
  });
  await check('StopAsyncTask (ended task: 400)', async () => {
    try {
      await fc.stopAsyncTask('echo', okId, new FC.StopAsyncTaskRequest({}));
    } catch (err) {
      expect(err.statusCode === 400, `status ${err.statusCode}: ${err.message}`);
      return { code: err.code };
    }
    throw new Error('stopping an ended task was accepted');
  });
  await check('GetAsyncTask (unknown id: 404)', async () => {
    try {
      await getTask('echo', `${prefix}-missing`);
    } catch (err) {
      expect(err.statusCode === 404, `status ${err.statusCode}`);
      return { code: err.code };
    }
    throw new Error('an unknown task was found');
  });
  await check('ListAsyncTasks (prefix, status, time range, sort, includePayload, limit, nextToken)', async () => {
    const seen = [];
    let nextToken;
    let pages = 0;
    do {
      const res = await fc.listAsyncTasks('echo', new FC.ListAsyncTasksRequest({
        prefix,
        status: 'Succeeded',
        startedTimeBegin: env.startedMs - 60000,
        startedTimeEnd: Date.now() + 60000,
        sortOrderByTime: 'asc',
        includePayload: true,
        limit: 1,
        nextToken,
      }));
      const tasks = res.body.tasks || [];
      expect(tasks.length <= 1, `limit 1 gave ${tasks.length}`);
      for (const t of tasks) {
        seen.push(t.taskId);
        expect(t.taskPayload && JSON.parse(t.taskPayload).from === 'node', `taskPayload ${t.taskPayload}`);
      }
      nextToken = res.body.nextToken || undefined;
      pages += 1;
    } while (nextToken && pages < 10);
    expect(seen.length === 1 && seen[0] === okId, `tasks ${seen}`);
    const failed = await fc.listAsyncTasks('failer', new FC.ListAsyncTasksRequest({ prefix, status: 'Failed' }));
    expect((failed.body.tasks || []).map((t) => t.taskId).join() === failId, 'status filter');
    const none = await fc.listAsyncTasks('echo', new FC.ListAsyncTasksRequest({ prefix, status: 'Failed' }));
    expect((none.body.tasks || []).length === 0, 'status Failed on echo');
    return { pages };
  });
  const fn = env.configFunction;
  await check('PutAsyncInvokeConfig', async () => {
    const res = await fc.putAsyncInvokeConfig(fn, new FC.PutAsyncInvokeConfigRequest({
      qualifier: 'LATEST',
      body: new FC.PutAsyncInvokeConfigInput({
        asyncTask: true,
        maxAsyncEventAgeInSeconds: 3600,
        maxAsyncRetryAttempts: 1,
        destinationConfig: new FC.DestinationConfig({
          onFailure: new FC.Destination({ destination: env.queueArn }),
        }),
      }),
    }));
    expect(res.statusCode === 200, `status ${res.statusCode}`);
    expect(res.body.asyncTask === true && res.body.maxAsyncRetryAttempts === 1, JSON.stringify(res.body));
  });
  await check('GetAsyncInvokeConfig', async () => {
    const res = await fc.getAsyncInvokeConfig(fn, new FC.GetAsyncInvokeConfigRequest({ qualifier: 'LATEST' }));
    const body = res.body;
    expect(body.maxAsyncEventAgeInSeconds === 3600, JSON.stringify(body));
    expect(body.destinationConfig.onFailure.destination === env.queueArn, 'destination');
    expect(body.functionArn && body.createdTime && body.lastModifiedTime, 'functionArn/createdTime');
  });
  await check('ListAsyncInvokeConfigs', async () => {
    const res = await fc.listAsyncInvokeConfigs(new FC.ListAsyncInvokeConfigsRequest({ functionName: fn, limit: 10 }));
    const configs = res.body.configs || [];
    expect(configs.length === 1 && configs[0].functionArn.endsWith(`functions/${fn}`), JSON.stringify(res.body));
  });
  await check('DeleteAsyncInvokeConfig', async () => {
    const res = await fc.deleteAsyncInvokeConfig(fn, new FC.DeleteAsyncInvokeConfigRequest({ qualifier: 'LATEST' }));
    expect(res.statusCode === 204 || res.statusCode === 200, `status ${res.statusCode}`);
    try {
      await fc.getAsyncInvokeConfig(fn, new FC.GetAsyncInvokeConfigRequest({ qualifier: 'LATEST' }));
    } catch (err) {
      expect(err.statusCode === 404, `status ${err.statusCode}`);
      return { afterDelete: err.code };
    }
    throw new Error('the config is still there');
  });
  await check('GetFunction', async () => {
    const res = await fc.getFunction('echo', new FC.GetFunctionRequest({}));
    expect(res.body.functionName === 'echo' && res.body.handler && res.body.functionArn, JSON.stringify(res.body));
  });
  await check('GetFunction (unknown: 404 FunctionNotFound)', async () => {
    try {
      await fc.getFunction(`${prefix}-none`, new FC.GetFunctionRequest({}));
    } catch (err) {
      expect(err.statusCode === 404 && err.code === 'FunctionNotFound', `${err.statusCode} ${err.code}`);
      return { code: err.code };
    }
    throw new Error('an unknown function was found');
  });
}

async function mnsSuite() {
  const mns = new MnsClient(env.accountId, {
    accessKeyId: env.accessKeyId,
    accessKeySecret: env.accessKeySecret,
    endpoint: env.endpoint,
  });
  const q = `${env.prefix}-nq`;
  await check('CreateQueue', async () => {
    const res = await mns.createQueue(q, { VisibilityTimeout: 5 });
    expect(res.code === 201, `status ${res.code}`);
    expect(res.headers.location && res.headers.location.endsWith(`/queues/${q}`), 'Location');
  });
  await check('GetQueueAttributes', async () => {
    const res = await mns.getQueueAttributes(q);
    expect(res.body.QueueName === q && res.body.VisibilityTimeout === '5', JSON.stringify(res.body));
  });
  await check('SetQueueAttributes', async () => {
    await mns.setQueueAttributes(q, { VisibilityTimeout: 7 });
    const res = await mns.getQueueAttributes(q);
    expect(res.body.VisibilityTimeout === '7', JSON.stringify(res.body));
  });
  await check('ListQueue (x-mns-prefix, x-mns-ret-number, x-mns-marker, NextMarker)', async () => {
    const names = [`${q}-a`, `${q}-b`, `${q}-c`];
    for (const n of names) {
      await mns.createQueue(n);
    }
    const first = await mns.listQueue(undefined, 2, `${q}-`);
    expect([].concat(first.body || []).length === 2, `ret-number 2 gave ${JSON.stringify(first.body)}`);
    // the SDK's listQueue drops NextMarker from its result: page with its own request(), which keeps it
    const seen = [];
    let marker;
    let pages = 0;
    do {
      const headers = { 'x-mns-prefix': `${q}-`, 'x-mns-ret-number': 2 };
      if (marker) {
        headers['x-mns-marker'] = marker;
      }
      const res = await mns.request('GET', '/queues', 'Queues', '', [], { headers });
      [].concat(res.body.Queue || []).forEach((item) => seen.push(item.QueueURL.split('/').pop()));
      marker = res.body.NextMarker;
      pages += 1;
    } while (marker && pages < 5);
    expect(JSON.stringify(seen) === JSON.stringify(names) && pages === 2, `${pages} pages gave ${seen}`);
    for (const n of names) {
      await mns.deleteQueue(n);
    }
    return { pages };
  });
  await check('SendMessage', async () => {
    const res = await mns.sendMessage(q, { MessageBody: 'node-one', Priority: 8 });
    expect(res.code === 201 && res.body.MessageId && res.body.MessageBodyMD5, JSON.stringify(res.body));
  });
  await check('BatchSendMessage', async () => {
    const res = await mns.batchSendMessage(q, [{ MessageBody: 'node-two' }, { MessageBody: 'node-three' }]);
    const items = [].concat(res.body);
    expect(res.code === 201 && items.length === 2 && items.every((m) => m.MessageId), JSON.stringify(res.body));
  });
  await check('PeekMessage', async () => {
    const res = await mns.peekMessage(q);
    expect(res.body.MessageBody && !res.body.ReceiptHandle, JSON.stringify(res.body));
  });
  await check('BatchPeekMessage', async () => {
    const res = await mns.batchPeekMessage(q, 3);
    expect([].concat(res.body).length === 3, JSON.stringify(res.body));
  });
  let handle;
  await check('ReceiveMessage', async () => {
    const res = await mns.receiveMessage(q, 1);
    expect(res.body.ReceiptHandle && res.body.MessageBody === 'node-one', JSON.stringify(res.body));
    handle = res.body.ReceiptHandle;
  });
  await check('ChangeMessageVisibility (receiptHandle, visibilityTimeout)', async () => {
    const res = await mns.changeMessageVisibility(q, handle, 1);
    expect(res.body.ReceiptHandle && res.body.NextVisibleTime, JSON.stringify(res.body));
    handle = res.body.ReceiptHandle;
  });
  await check('DeleteMessage', async () => {
    const res = await mns.deleteMessage(q, handle);
    expect(res.code === 204, `status ${res.code}`);
  });
  let handles = [];
  await check('BatchReceiveMessage', async () => {
    const res = await mns.batchReceiveMessage(q, 16, 1);
    const items = [].concat(res.body);
    expect(items.length === 2, JSON.stringify(res.body));
    handles = items.map((m) => m.ReceiptHandle);
  });
  await check('BatchDeleteMessage', async () => {
    const res = await mns.batchDeleteMessage(q, handles);
    expect(res.code === 204, `status ${res.code}`);
    const attrs = await mns.getQueueAttributes(q);
    expect(attrs.body.ActiveMessages === '0' && attrs.body.InactiveMessages === '0', JSON.stringify(attrs.body));
  });
  await check('ReceiveMessage (empty queue: MessageNotExist)', async () => {
    try {
      await mns.receiveMessage(q, 1);
    } catch (err) {
      expect(err.name.startsWith('MNSMessageNotExist'), err.name);
      return { name: err.name };
    }
    throw new Error('an empty queue gave a message');
  });
  await check('DeleteQueue', async () => {
    const res = await mns.deleteQueue(q);
    expect(res.code === 204, `status ${res.code}`);
    try {
      await mns.getQueueAttributes(q);
    } catch (err) {
      expect(err.name.startsWith('MNSQueueNotExist'), err.name);
      return null;
    }
    throw new Error('the queue is still there');
  });
}

(async () => {
  await fcSuite();
  await mnsSuite();
  process.exit(results.every((r) => r.ok) ? 0 : 1);
})();
