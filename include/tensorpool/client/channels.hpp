// Where a stream's messages travel: one channel URI and a stream id per logical stream (WIRE_SPEC §1, §15.11).
//
// Defaults meet the other implementations' (control 1000, announce 1001, descriptor 1100, QoS 1200, metadata
// 1300). Over Aeron every stream uses the same channel string `aeron:ipc?term-length=4m`, because Aeron refuses a
// second publication on a stream with another term length; on the embedded bus the default is `ipc:tensorpool`.
#pragma once

#include <cstdint>
#include <string>

namespace tensorpool::client {

struct Channels {
    std::string channel = "ipc:tensorpool";
    int32_t control_stream = 1000;     // ConsumerHello, ConsumerConfig, ControlResponse, FrameProgress
    int32_t announce_stream = 1001;    // ShmPoolAnnounce
    int32_t descriptor_stream = 1100;  // FrameDescriptor
    int32_t qos_stream = 1200;         // QosProducer, QosConsumer
    int32_t metadata_stream = 1300;    // DataSourceAnnounce, DataSourceMeta, MetaBlob*

    static Channels aeron_defaults() {
        Channels c;
        c.channel = "aeron:ipc?term-length=4m";
        return c;
    }
};

}  // namespace tensorpool::client
