import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type DescriptorProto,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import { descriptorSetBase64 } from "../../gen/descriptor-set.js";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1Alpha,
  ServerReflectionRequestSchema as RequestV1AlphaSchema,
  ServerReflectionResponseSchema as ResponseV1AlphaSchema,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/**
 * gRPC server reflection (https://github.com/grpc/grpc/blob/master/doc/server-reflection.md),
 * v1 and v1alpha, so that `buf curl`, grpcurl and Postman work without the
 * .proto files. connect-node has none (connect-es #507). Descriptors come from
 * a set built by buf with source info, so clients also see the doc comments.
 */
export interface DescriptorIndex {
  /** Serialized FileDescriptorProto by file name. */
  files: Map<string, { bytes: Uint8Array; deps: string[] }>;
  /** Fully-qualified symbol (message, enum, service, method, field, extension) → file name. */
  symbols: Map<string, string>;
  /** "containing.Type:number" → file name. */
  extensions: Map<string, string>;
  /** Extension numbers by extended type. */
  extensionNumbers: Map<string, number[]>;
}

let builtIn: DescriptorIndex | undefined;

/** The index of the project's descriptor set (gen/descriptor-set.ts), built once. */
export function descriptorIndex(): DescriptorIndex {
  builtIn ??= indexDescriptorSet(Buffer.from(descriptorSetBase64, "base64"));
  return builtIn;
}

export function indexDescriptorSet(bytes: Uint8Array): DescriptorIndex {
  const set = fromBinary(FileDescriptorSetSchema, bytes);
  const index: DescriptorIndex = { files: new Map(), symbols: new Map(), extensions: new Map(), extensionNumbers: new Map() };
  for (const file of set.file) {
    index.files.set(file.name, { bytes: toBinary(FileDescriptorProtoSchema, file), deps: file.dependency });
    indexFile(index, file);
  }
  return index;
}

function indexFile(index: DescriptorIndex, file: FileDescriptorProto): void {
  const prefix = file.package === "" ? "" : `${file.package}.`;
  const addExtensions = (exts: FileDescriptorProto["extension"], scope: string) => {
    for (const ext of exts) {
      index.symbols.set(`${scope}${ext.name}`, file.name);
      const extendee = ext.extendee.replace(/^\./, "");
      index.extensions.set(`${extendee}:${ext.number}`, file.name);
      const numbers = index.extensionNumbers.get(extendee) ?? [];
      numbers.push(ext.number);
      index.extensionNumbers.set(extendee, numbers);
    }
  };
  const addMessage = (m: DescriptorProto, scope: string) => {
    const name = `${scope}${m.name}`;
    index.symbols.set(name, file.name);
    for (const f of m.field) index.symbols.set(`${name}.${f.name}`, file.name);
    for (const e of m.enumType) index.symbols.set(`${name}.${e.name}`, file.name);
    for (const n of m.nestedType) addMessage(n, `${name}.`);
    addExtensions(m.extension, `${name}.`);
  };
  for (const m of file.messageType) addMessage(m, prefix);
  for (const e of file.enumType) {
    index.symbols.set(`${prefix}${e.name}`, file.name);
    // Enum values are scoped like siblings of their enum (protobuf scoping rules).
    for (const v of e.value) index.symbols.set(`${prefix}${v.name}`, file.name);
  }
  for (const s of file.service) {
    index.symbols.set(`${prefix}${s.name}`, file.name);
    for (const m of s.method) index.symbols.set(`${prefix}${s.name}.${m.name}`, file.name);
  }
  addExtensions(file.extension, prefix);
}

/** Answers one request. `sent` holds the files already sent on this stream: each goes once, as grpc-go does. */
export function answer(
  index: DescriptorIndex,
  services: () => string[],
  req: ServerReflectionRequest,
  sent: Set<string>,
): ServerReflectionResponse {
  const base = { validHost: req.host, originalRequest: req };
  const notFound = (what: string) =>
    create(ServerReflectionResponseSchema, {
      ...base,
      messageResponse: { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: `${what} not found` } },
    });
  const files = (name: string | undefined, what: string) => {
    if (name === undefined || !index.files.has(name)) return notFound(what);
    const fileDescriptorProto: Uint8Array[] = [];
    // The file first, then its imports, transitively; reflection clients resolve every type from these.
    const visit = (n: string, force: boolean) => {
      if (sent.has(n) && !force) return;
      const f = index.files.get(n);
      if (f === undefined) return;
      sent.add(n);
      fileDescriptorProto.push(f.bytes);
      for (const d of f.deps) visit(d, false);
    };
    visit(name, true);
    return create(ServerReflectionResponseSchema, {
      ...base,
      messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto } },
    });
  };
  const m = req.messageRequest;
  switch (m.case) {
    case "fileByFilename":
      return files(m.value, `file "${m.value}"`);
    case "fileContainingSymbol":
      return files(index.symbols.get(m.value.replace(/^\./, "")), `symbol "${m.value}"`);
    case "fileContainingExtension":
      return files(
        index.extensions.get(`${m.value.containingType}:${m.value.extensionNumber}`),
        `extension ${m.value.extensionNumber} of "${m.value.containingType}"`,
      );
    case "allExtensionNumbersOfType": {
      if (!index.symbols.has(m.value)) return notFound(`type "${m.value}"`);
      return create(ServerReflectionResponseSchema, {
        ...base,
        messageResponse: {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: m.value, extensionNumber: index.extensionNumbers.get(m.value) ?? [] },
        },
      });
    }
    case "listServices":
      return create(ServerReflectionResponseSchema, {
        ...base,
        messageResponse: { case: "listServicesResponse", value: { service: services().map((name) => ({ name })) } },
      });
    default:
      return create(ServerReflectionResponseSchema, {
        ...base,
        messageResponse: {
          case: "errorResponse",
          value: { errorCode: Code.InvalidArgument, errorMessage: "message_request: one of its fields must be set" },
        },
      });
  }
}

/**
 * Routes for both reflection versions. Register them last: the services listed
 * are those of the router when the first request arrives.
 */
export function reflectionRoutes(index: DescriptorIndex = descriptorIndex()) {
  return (router: ConnectRouter) => {
    let names: string[] | undefined;
    const services = () => (names ??= [...new Set(router.handlers.map((h) => h.service.typeName))].sort());
    router.service(ServerReflection, {
      async *serverReflectionInfo(requests) {
        const sent = new Set<string>();
        for await (const req of requests) yield answer(index, services, req, sent);
      },
    });
    // v1alpha's messages are v1's under another package: the same bytes on the wire.
    router.service(ServerReflectionV1Alpha, {
      async *serverReflectionInfo(requests) {
        const sent = new Set<string>();
        for await (const req of requests) {
          const v1 = fromBinary(ServerReflectionRequestSchema, toBinary(RequestV1AlphaSchema, req));
          yield fromBinary(ResponseV1AlphaSchema, toBinary(ServerReflectionResponseSchema, answer(index, services, v1, sent)));
        }
      },
    });
  };
}
